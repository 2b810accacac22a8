#!/usr/bin/env bash
# Quick start: on a fresh Debian/Ubuntu machine, installs what is missing, builds opsctl,
# starts a local TLS cluster (.opsctl-local/) and runs the main job end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_deps
log "building opsctl (release)"
cargo build --release --locked --quiet
OPSCTL="$PWD/target/release/opsctl"
scripts/local-cluster.sh start
eval "$(scripts/local-cluster.sh env)"
export OPSCTL_DATABASE_URL

# On-call reports (issue 8). The size snapshot table comes from migration V50: applied by
# `opsctl migrate up` when this build has it, else directly with psql.
log "pg_stat_statements (the slow-queries check reads it)"
psql "$OPSCTL_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
if "$OPSCTL" migrate --help >/dev/null 2>&1; then
  "$OPSCTL" migrate up
else
  psql "$OPSCTL_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -f migrations/V50__size_snapshots.sql
fi
log "opsctl report pool"
"$OPSCTL" report pool
log "opsctl report size --snapshot"
"$OPSCTL" report size --snapshot
log "opsctl health (every check; stays the last step)"
"$OPSCTL" health
log "quick start finished: every step above ran against $(echo "$OPSCTL_DATABASE_URL" | sed -E 's#//([^:]+):[^@]*@#//\1:****@#')"
echo "stop the cluster with: scripts/local-cluster.sh stop"
