#!/usr/bin/env bash
# Quick start: on a fresh Debian/Ubuntu machine, installs what is missing, builds opsctl,
# starts a local TLS cluster (.opsctl-local/) and runs the whole main job end to end:
# migrations, the sample data import, partitions, an encrypted backup with its restore
# drill, archival, maintenance, the audit chain, the scheduler, point-in-time recovery
# (WAL archiving, a base backup and a PITR drill) and the on-call reports.
# Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_deps
log "building opsctl (release)"
cargo build --release --locked --quiet
OPSCTL="$PWD/target/release/opsctl"
# Test hooks (fault injection, pauses) exist only in test builds (`--features test-hooks`).
log "checking that the release binary holds no test hooks"
if command -v strings >/dev/null; then
  hooks="$(strings "$OPSCTL" | grep -o -E 'OPSCTL_(TEST_|DRILL_FAULT)[A-Z_]*' | sort -u || true)"
else
  hooks="$(grep -a -o -E 'OPSCTL_(TEST_|DRILL_FAULT)[A-Z_]*' "$OPSCTL" | sort -u || true)"
fi
[ -z "$hooks" ] || die "the release binary contains test hooks: $(echo $hooks)"
scripts/local-cluster.sh start
eval "$(scripts/local-cluster.sh env)"
export OPSCTL_DATABASE_URL
LOCAL="$PWD/.opsctl-local"
POLICY=policies/examples/quickstart.toml

log "opsctl migrate up / status"
"$OPSCTL" migrate up
"$OPSCTL" migrate status

log "opsctl import: the sample data set (tests/fixtures/sample, see scripts/sample-data/generate.py)"
"$OPSCTL" import --table users tests/fixtures/sample/users.json
"$OPSCTL" import --table trades tests/fixtures/sample/trades.ndjson
"$OPSCTL" import --table positions tests/fixtures/sample/positions.json
"$OPSCTL" import --table account_totals tests/fixtures/sample/account_totals.json

log "opsctl partition ensure (trades and the audit log: oldest data month through now + 3) / list"
"$OPSCTL" partition ensure --policy "$POLICY"
"$OPSCTL" partition list --policy "$POLICY"

log "opsctl backup keygen (once) / create / list / verify / drill"
export OPSCTL_KEY_FILE="$LOCAL/backup.key"
[ -f "$OPSCTL_KEY_FILE" ] || "$OPSCTL" backup keygen --out "$OPSCTL_KEY_FILE"
BACKUP_DIR="$LOCAL/backups"
"$OPSCTL" backup create --dir "$BACKUP_DIR"
"$OPSCTL" backup list --dir "$BACKUP_DIR"
"$OPSCTL" backup verify "$(ls -t "$BACKUP_DIR"/*/*.opsbak | head -n1)"
"$OPSCTL" drill --latest --dir "$BACKUP_DIR"

# The sample data's oldest months: everything older than the first of the month 9 months ago.
ARCHIVE_BEFORE="$(date -u -d "$(date -u +%Y-%m-15) -9 months" +%Y-%m-01)"
log "opsctl archive --before $ARCHIVE_BEFORE (dry run, then for real)"
"$OPSCTL" archive --before "$ARCHIVE_BEFORE" --dry-run
"$OPSCTL" archive --before "$ARCHIVE_BEFORE"
"$OPSCTL" partition list --table trades
# Export the archived months: encrypted with the backup key, read back and verified before
# anything else. The months stay in the database here; --drop-after-export would remove
# each verified one (and `opsctl archive restore FILE` brings one back).
log "opsctl archive --before $ARCHIVE_BEFORE --export-dir $LOCAL/archive-export"
"$OPSCTL" archive --before "$ARCHIVE_BEFORE" --export-dir "$LOCAL/archive-export"
ls -l "$LOCAL/archive-export"

log "opsctl vacuum / reindex (dry run: the plan and why; then for real)"
"$OPSCTL" vacuum --dry-run
"$OPSCTL" vacuum
"$OPSCTL" reindex --dry-run
"$OPSCTL" reindex

log "opsctl audit seal / verify / report"
"$OPSCTL" audit seal
"$OPSCTL" audit verify
"$OPSCTL" audit report --since 1h

log "opsctl policy check / schedule list / schedule run --once backup ($POLICY)"
"$OPSCTL" policy check "$POLICY" >/dev/null
"$OPSCTL" schedule list --policy "$POLICY"
"$OPSCTL" schedule run --once backup --policy "$POLICY"
log "opsctl schedule history (what the scheduler did: outcome, exit code, error)"
"$OPSCTL" schedule history --since 1h

log "opsctl report pool / report size --snapshot"
psql "$OPSCTL_DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
"$OPSCTL" report pool
"$OPSCTL" report size --snapshot

# Point-in-time recovery: archiving with opsctl wal push into a repository the server's
# OS user (postgres) can read and write, a physical base backup, then a PITR drill that
# recovers a scratch server from base backup + archived WAL and compares the tables.
PITR="$LOCAL/pitr"
PITR_POLICY="$PITR/policy.toml"
log "point-in-time recovery: opsctl wal setup (archive_command = opsctl wal push) into $PITR/repo"
mkdir -p "$PITR"
[ -f "$PITR/key" ] || "$OPSCTL" backup keygen --out "$PITR/key"
cat > "$PITR_POLICY" <<TOML
[backup]
dir = "$PITR/repo"
key_file = "$PITR/key"

[basebackup]
keep_last = 2
archive_wait = "3 minutes"
TOML
"$OPSCTL" wal setup --print --policy "$PITR_POLICY" | psql "$OPSCTL_DATABASE_URL" -X -q -o /dev/null -v ON_ERROR_STOP=1
# The server's OS user writes the repository and reads the key and the policy.
mkdir -p "$PITR/repo"
[ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$PITR"
chmod 700 "$PITR"
scripts/local-cluster.sh restart
log "opsctl basebackup / wal status / wal verify / drill --pitr / backup list ($PITR_POLICY)"
"$OPSCTL" basebackup --policy "$PITR_POLICY"
"$OPSCTL" wal status --policy "$PITR_POLICY"
"$OPSCTL" wal verify --policy "$PITR_POLICY"
"$OPSCTL" drill --pitr --policy "$PITR_POLICY"
"$OPSCTL" backup list --policy "$PITR_POLICY"
[ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$PITR"

log "opsctl health --policy $POLICY (every check, worst first)"
status=0
"$OPSCTL" health --policy "$POLICY" || status=$?
[ "$status" -le 1 ] || die "health says CRITICAL or UNKNOWN (exit $status): see above"
log "quick start finished: every step above ran against $(echo "$OPSCTL_DATABASE_URL" | sed -E 's#//([^:]+):[^@]*@#//\1:****@#')"
echo "stop the cluster with: scripts/local-cluster.sh stop (destroy removes it)"

# The dashboard: `opsctl serve` shows every page with this token (bearer or login form).
SERVE_TOKEN="$LOCAL/serve.token"
[ -f "$SERVE_TOKEN" ] || (umask 077 && openssl rand -hex 32 > "$SERVE_TOKEN")
log "dashboard: run  $OPSCTL serve --policy $POLICY --token-file $SERVE_TOKEN"
echo "then open http://127.0.0.1:8080/ and log in with the first line of the token file $SERVE_TOKEN"
