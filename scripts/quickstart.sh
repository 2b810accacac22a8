#!/usr/bin/env bash
# Quick start: on a fresh Debian/Ubuntu machine, installs what is missing, builds opsctl,
# starts a local TLS cluster (.opsctl-local/) and runs the whole main job end to end:
# migrations, the sample data import, partitions, an encrypted backup with its restore
# drill, a copy in a second repository on a loopback S3 server, archival, maintenance, the audit chain, the scheduler, point-in-time recovery
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

# A second repository off the machine: a loopback S3 server (s3s-fs, an S3 server over a
# directory that checks request signatures) stands in for MinIO or AWS S3. The policy is
# the quick start's plus a [[repositories]] entry: backup create writes to the local
# directory first, then copies to "offsite" and reads the copy back.
log "a second repository on S3: s3s-fs on loopback as [[repositories]] \"offsite\"; backup create / list / verify --repo offsite / drill --repo offsite"
S3S_FS="$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")"
S3_PORT="$(free_port)"
mkdir -p "$LOCAL/s3/opsctl"
[ -f "$LOCAL/s3.secret" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$LOCAL/s3.secret")
export AWS_ACCESS_KEY_ID=opsctl-quickstart
AWS_SECRET_ACCESS_KEY="$(cat "$LOCAL/s3.secret")"
export AWS_SECRET_ACCESS_KEY
"$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AWS_ACCESS_KEY_ID" \
  --secret-key "$AWS_SECRET_ACCESS_KEY" "$LOCAL/s3" > "$LOCAL/s3s-fs.log" 2>&1 &
S3_PID=$!
trap 'kill "$S3_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break
  sleep 0.1
done
S3_POLICY="$LOCAL/quickstart-s3.toml"
{ cat "$POLICY"; cat <<TOML

[[repositories]]
name = "offsite"
url = "s3://opsctl/quickstart"
endpoint = "http://127.0.0.1:$S3_PORT"
path_style = true
allow_http = true
TOML
} > "$S3_POLICY"
"$OPSCTL" policy check "$S3_POLICY" >/dev/null
"$OPSCTL" backup create --policy "$S3_POLICY"
"$OPSCTL" backup list --policy "$S3_POLICY"
S3_ID="$("$OPSCTL" backup list --repo offsite --policy "$S3_POLICY" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')"
"$OPSCTL" backup verify "$S3_ID" --repo offsite --policy "$S3_POLICY"
"$OPSCTL" drill --latest --repo offsite --policy "$S3_POLICY"

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
# Its own key, named by its policy: OPSCTL_KEY_FILE (the logical backups' key) would
# override the policy for basebackup and the drill's restore_command.
unset OPSCTL_KEY_FILE
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
"$OPSCTL" health --policy "$PITR_POLICY" --check wal_archiving --check pitr_window
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
