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
log "opsctl migrate up"
"$OPSCTL" migrate up
log "opsctl migrate status"
"$OPSCTL" migrate status
log "opsctl import: the sample data set (tests/fixtures/sample, see scripts/sample-data/generate.py)"
"$OPSCTL" import --table users tests/fixtures/sample/users.json
"$OPSCTL" import --table trades tests/fixtures/sample/trades.ndjson
"$OPSCTL" import --table positions tests/fixtures/sample/positions.json
"$OPSCTL" import --table account_totals tests/fixtures/sample/account_totals.json

log "opsctl backup keygen (once) / create / list / verify / drill"
BACKUP_KEY="$PWD/.opsctl-local/backup.key"
[ -f "$BACKUP_KEY" ] || "$OPSCTL" backup keygen --out "$BACKUP_KEY"
export OPSCTL_KEY_FILE="$BACKUP_KEY"
BACKUP_DIR="$PWD/.opsctl-local/backups"
"$OPSCTL" backup create --dir "$BACKUP_DIR"
"$OPSCTL" backup list --dir "$BACKUP_DIR"
"$OPSCTL" backup verify "$(ls -t "$BACKUP_DIR"/*/*.opsbak | head -n1)"
"$OPSCTL" drill --latest --dir "$BACKUP_DIR"

log "opsctl vacuum --dry-run (the plan: which tables need it and why)"
"$OPSCTL" vacuum --dry-run
log "opsctl vacuum"
"$OPSCTL" vacuum
log "opsctl reindex --dry-run (bloated and invalid indexes)"
"$OPSCTL" reindex --dry-run
log "opsctl reindex"
"$OPSCTL" reindex
log "opsctl policy check + schedule list (policies/examples/quickstart.toml)"
"$OPSCTL" policy check policies/examples/quickstart.toml >/dev/null
"$OPSCTL" schedule list --policy policies/examples/quickstart.toml

# Audit (needs the schema: `opsctl migrate up` above). Seal what finished, verify the
# chain, then the last hour's report.
log "opsctl audit seal"
"$OPSCTL" audit seal
log "opsctl audit verify"
"$OPSCTL" audit verify
log "opsctl audit report --since 1h"
"$OPSCTL" audit report --since 1h
log "opsctl partition ensure (months from the oldest data through now + 3)"
"$OPSCTL" partition ensure
log "opsctl partition list"
"$OPSCTL" partition list
# The sample data's oldest months: everything older than the first of the month 9 months ago.
ARCHIVE_BEFORE="$(date -u -d "$(date -u +%Y-%m-15) -9 months" +%Y-%m-01)"
log "opsctl archive --before $ARCHIVE_BEFORE --dry-run"
"$OPSCTL" archive --before "$ARCHIVE_BEFORE" --dry-run
log "opsctl archive --before $ARCHIVE_BEFORE"
"$OPSCTL" archive --before "$ARCHIVE_BEFORE"
"$OPSCTL" partition list --table trades

# Export the archived months (encrypted with the quick start's backup key, read back and
# verified before anything else), then show that an export opens and checks out. The
# months stay in the database here; add --drop-after-export to remove each verified one.
ARCHIVE_EXPORT_DIR="$PWD/.opsctl-local/archive-export"
log "opsctl archive --before $ARCHIVE_BEFORE --export-dir $ARCHIVE_EXPORT_DIR"
"$OPSCTL" archive --before "$ARCHIVE_BEFORE" --export-dir "$ARCHIVE_EXPORT_DIR"
ls -l "$ARCHIVE_EXPORT_DIR"
log "opsctl partition ensure with the documented policy (trades and the audit log)"
"$OPSCTL" partition ensure --policy policies/opsctl.toml
log "quick start finished: every step above ran against $(echo "$OPSCTL_DATABASE_URL" | sed -E 's#//([^:]+):[^@]*@#//\1:****@#')"
echo "stop the cluster with: scripts/local-cluster.sh stop"
