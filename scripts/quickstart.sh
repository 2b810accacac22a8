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
log "opsctl migrate up"
"$OPSCTL" migrate up
log "opsctl migrate status"
"$OPSCTL" migrate status
log "opsctl import: the sample data set (tests/fixtures/sample, see scripts/sample-data/generate.py)"
"$OPSCTL" import --table users tests/fixtures/sample/users.json
"$OPSCTL" import --table trades tests/fixtures/sample/trades.ndjson
"$OPSCTL" import --table positions tests/fixtures/sample/positions.json
"$OPSCTL" import --table account_totals tests/fixtures/sample/account_totals.json

log "quick start finished: every step above ran against $(echo "$OPSCTL_DATABASE_URL" | sed -E 's#//([^:]+):[^@]*@#//\1:****@#')"
echo "stop the cluster with: scripts/local-cluster.sh stop"
