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

log "opsctl health"
"$OPSCTL" health
log "opsctl vacuum --dry-run (the plan: which tables need it and why)"
"$OPSCTL" vacuum --dry-run
log "opsctl vacuum"
"$OPSCTL" vacuum
log "opsctl reindex --dry-run (bloated and invalid indexes)"
"$OPSCTL" reindex --dry-run
log "opsctl reindex"
"$OPSCTL" reindex
log "quick start finished: every step above ran against $(echo "$OPSCTL_DATABASE_URL" | sed -E 's#//([^:]+):[^@]*@#//\1:****@#')"
echo "stop the cluster with: scripts/local-cluster.sh stop"
