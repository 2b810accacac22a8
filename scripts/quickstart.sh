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
log "opsctl backup keygen (once) / create / list / verify / drill"
BACKUP_KEY="$PWD/.opsctl-local/backup.key"
[ -f "$BACKUP_KEY" ] || "$OPSCTL" backup keygen --out "$BACKUP_KEY"
export OPSCTL_KEY_FILE="$BACKUP_KEY"
BACKUP_DIR="$PWD/.opsctl-local/backups"
"$OPSCTL" backup create --dir "$BACKUP_DIR"
"$OPSCTL" backup list --dir "$BACKUP_DIR"
"$OPSCTL" backup verify "$(ls -t "$BACKUP_DIR"/*/*.opsbak | head -n1)"
"$OPSCTL" drill --latest --dir "$BACKUP_DIR"

log "quick start finished: every step above ran against $(echo "$OPSCTL_DATABASE_URL" | sed -E 's#//([^:]+):[^@]*@#//\1:****@#')"
echo "stop the cluster with: scripts/local-cluster.sh stop"
