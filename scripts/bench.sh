#!/usr/bin/env bash
# opsctl's benchmark suite: opsctl against what a user would do by hand, side by side in
# one run, each pair alternated --reps times, medians and ratios, peak RSS of every
# opsctl command, and RSS again at twice the data (it should not grow).
#
#   scripts/bench.sh [--rows N] [--reps R] [--opsctl PATH] [--out FILE]
#   scripts/bench.sh --wal-only [--reps R] [--seconds S] [--opsctl PATH]   (scripts/bench-wal.sh)
#
# Defaults: 2,000,000 trades over 24 months (a few hundred MB), 3 repetitions, a release
# build. Data is generated reproducibly (setseed). A throwaway TLS cluster is started
# under a temp dir and removed at the end. Results: a markdown table on stdout and in
# --out (default benches/results/latest.md). Figures are copied into benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROWS=2000000
REPS=3
OPSCTL=""
OUT="benches/results/latest.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --opsctl) OPSCTL="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --wal-only) shift; exec scripts/bench-wal.sh "$@" ;;
    *) die "unknown argument $1 (use --rows N --reps R --opsctl PATH --out FILE)" ;;
  esac
done
install_deps
if [ -z "$OPSCTL" ]; then
  log "building opsctl (release)"
  cargo build --release --locked --quiet
  OPSCTL="$PWD/target/release/opsctl"
fi
OPSCTL="$(cd "$(dirname "$OPSCTL")" && pwd)/$(basename "$OPSCTL")"

WORK="$(mktemp -d /tmp/opsctl-bench.XXXXXX)"
chmod 755 "$WORK"
export OPSCTL_LOCAL_DIR="$WORK/cluster"
cleanup() { scripts/local-cluster.sh destroy >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
scripts/local-cluster.sh start >/dev/null 2>&1
eval "$(scripts/local-cluster.sh env)"
export OPSCTL_DATABASE_URL
BASE_URL="$OPSCTL_DATABASE_URL"
export PGOPTIONS="-c client_min_messages=warning"
PORT=$(cat "$OPSCTL_LOCAL_DIR/port")
export PGHOST=localhost PGPORT=$PORT PGUSER=postgres PGSSLMODE=verify-full
export PGSSLROOTCERT="$OPSCTL_LOCAL_DIR/ca.crt" PGPASSWORD="$(cat "$OPSCTL_LOCAL_DIR/password")"
BIN="$PG_BINDIR"
url_for() { echo "$BASE_URL" | sed -E "s#/opsctl\?#/$1?#"; }
q() { psql -X -q -tA -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
RESULTS="$WORK/results.tsv"
: > "$RESULTS"

# measure NAME CMD...: wall seconds and peak RSS (KiB) of one run, appended to RESULTS.
measure() {
  local name="$1"; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/last.out" 2>"$WORK/last.err" \
    || { cat "$WORK/last.err" >&2; die "$name failed"; }
  read -r secs rss < "$WORK/time.txt"
  printf '%s\t%s\t%s\n' "$name" "$secs" "$rss" >> "$RESULTS"
}
median() { awk -F'\t' -v n="$1" '$1==n {print $'"${2:-2}"'}' "$RESULTS" | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
maxcol() { awk -F'\t' -v n="$1" '$1==n {if ($3>m) m=$3} END {print m+0}' "$RESULTS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }

# ---------------------------------------------------------------- data
# make_trading_db NAME ROWS: schema by opsctl, users and ROWS trades over 24 months.
make_trading_db() {
  local db="$1" rows="$2"
  q postgres "DROP DATABASE IF EXISTS $db" >/dev/null; q postgres "CREATE DATABASE $db" >/dev/null
  OPSCTL_DATABASE_URL="$(url_for "$db")" "$OPSCTL" migrate up >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<SQL
SELECT setseed(0.42);
INSERT INTO users (username, email)
  SELECT 'user' || g, 'user' || g || '@example.com' FROM generate_series(1, 1000) g;
ALTER TABLE trades DISABLE TRIGGER USER;
INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, exit_price, entry_time,
                    exit_time, realized_pnl, commission, model_id)
SELECT 't' || g, 1 + (g % 1000),
       (ARRAY['BTCUSDT','ETHUSDT','SOLUSDT','BNBUSDT','XRPUSDT','ADAUSDT'])[1 + g % 6],
       (ARRAY['long','short','buy','sell'])[1 + g % 4],
       round((random() * 10)::numeric, 8), round((random() * 60000)::numeric, 8),
       round((random() * 60000)::numeric, 8),
       date_trunc('month', now() at time zone 'utc') - interval '24 months'
         + (g::float8 / $rows) * interval '24 months',
       date_trunc('month', now() at time zone 'utc') - interval '24 months'
         + (g::float8 / $rows) * interval '24 months' + interval '2 hours',
       round((random() * 2000 - 1000)::numeric, 8), round((random() * 5)::numeric, 8),
       'model-' || (g % 7)
FROM generate_series(1, $rows) g;
ALTER TABLE trades ENABLE TRIGGER USER;
SQL
  OPSCTL_DATABASE_URL="$(url_for "$db")" "$OPSCTL" partition ensure >/dev/null 2>&1
  q "$db" "VACUUM ANALYZE" >/dev/null
}

log "generating $ROWS trades (seeded)"
make_trading_db bench "$ROWS"
DB_SIZE=$(q bench "SELECT pg_size_pretty(pg_database_size('bench'))")
export OPSCTL_DATABASE_URL="$(url_for bench)"
KEY="$WORK/backup.key"; "$OPSCTL" backup keygen --out "$KEY" >/dev/null
openssl rand -hex 32 > "$WORK/openssl.pass"
mkdir -p "$WORK/repo"

# ---------------------------------------------------------------- backup create
log "backup create vs pg_dump -Fc | openssl enc ($REPS rounds, alternated)"
for i in $(seq "$REPS"); do
  rm -rf "$WORK/repo"/*
  measure backup_create "$OPSCTL" backup create --dir "$WORK/repo" --key-file "$KEY"
  measure hand_dump_openssl sh -c "'$BIN/pg_dump' -Fc -d bench | openssl enc -aes-256-cbc -pbkdf2 -pass file:'$WORK/openssl.pass' > '$WORK/hand.dump.enc'"
done
BACKUP_FILE=$(find "$WORK/repo" -name '*.opsbak' | head -1)
[ -n "$BACKUP_FILE" ] || BACKUP_FILE=$(find "$WORK/repo" -type f ! -name '*.json' | head -1)
SIZE_OPS=$(stat -c %s "$BACKUP_FILE"); SIZE_HAND=$(stat -c %s "$WORK/hand.dump.enc")

log "backup verify"
for i in $(seq "$REPS"); do measure backup_verify "$OPSCTL" backup verify "$BACKUP_FILE" --key-file "$KEY"; done
"$BIN/pg_dump" -Fc -d bench -f "$WORK/plain.dump"
PLAIN_SIZE=$(stat -c %s "$WORK/plain.dump")

# ---------------------------------------------------------------- restore
log "restore vs pg_restore of an unencrypted custom-format dump"
for i in $(seq "$REPS"); do
  q postgres "DROP DATABASE IF EXISTS r_ops" >/dev/null
  measure restore "$OPSCTL" restore "$BACKUP_FILE" --key-file "$KEY" --target-db r_ops --create
  q postgres "DROP DATABASE IF EXISTS r_hand" >/dev/null; q postgres "CREATE DATABASE r_hand" >/dev/null
  measure hand_pg_restore "$BIN/pg_restore" --no-owner -d r_hand "$WORK/plain.dump"
done
[ "$(q r_ops 'SELECT count(*) FROM trades')" = "$ROWS" ] || die "restored row count differs"

# ---------------------------------------------------------------- import
IMPORT_ROWS=$(( ROWS / 2 ))
log "import of $IMPORT_ROWS trades vs psql \\copy CSV"
q bench "COPY (SELECT row_to_json(t) FROM (SELECT id, user_id, symbol, side, quantity::text AS quantity, entry_price::text AS entry_price, exit_price::text AS exit_price, to_char(entry_time, 'YYYY-MM-DD HH24:MI:SS') AS entry_time, to_char(exit_time, 'YYYY-MM-DD HH24:MI:SS') AS exit_time, realized_pnl::text AS realized_pnl, commission::text AS commission, model_id FROM trades ORDER BY id LIMIT $IMPORT_ROWS) t) TO STDOUT" > "$WORK/trades.ndjson"
q bench "COPY (SELECT id, user_id, symbol, side, quantity, entry_price, exit_price, entry_time, exit_time, realized_pnl, commission, model_id FROM trades ORDER BY id LIMIT $IMPORT_ROWS) TO STDOUT WITH (FORMAT csv)" > "$WORK/trades.csv"
make_trading_db imp_template 0
# fresh_import_db NAME TRIGGERS: a copy of the empty template, audit trigger on or off.
fresh_import_db() {
  q postgres "DROP DATABASE IF EXISTS $1" >/dev/null; q postgres "CREATE DATABASE $1 TEMPLATE imp_template" >/dev/null
  [ "$2" = on ] || q "$1" "ALTER TABLE trades DISABLE TRIGGER USER" >/dev/null
}
for i in $(seq "$REPS"); do
  for trig in on off; do
    fresh_import_db imp_ops "$trig"
    OPSCTL_DATABASE_URL="$(url_for imp_ops)" measure "import_$trig" "$OPSCTL" import --table trades "$WORK/trades.ndjson"
    fresh_import_db imp_hand "$trig"
    measure "hand_psql_copy_$trig" psql -X -q -d imp_hand -c "\\copy trades (id, user_id, symbol, side, quantity, entry_price, exit_price, entry_time, exit_time, realized_pnl, commission, model_id) FROM '$WORK/trades.csv' WITH (FORMAT csv)"
  done
done

# ---------------------------------------------------------------- archive
log "archive: whole months, and a partial month vs one hand-written DELETE … RETURNING move"
q postgres "DROP DATABASE IF EXISTS arch_template" >/dev/null
q postgres "CREATE DATABASE arch_template TEMPLATE bench" >/dev/null
FIRST=$(q bench "SELECT to_char(date_trunc('month', min(entry_time)), 'YYYY-MM-DD') FROM trades")
WHOLE=$(q bench "SELECT to_char(date_trunc('month', min(entry_time)) + interval '6 months', 'YYYY-MM-DD') FROM trades")
WHOLE_ROWS=$(q bench "SELECT count(*) FROM trades WHERE entry_time < '$WHOLE'")
MID=$(q bench "SELECT to_char(date_trunc('month', min(entry_time)) + interval '6 months' + interval '15 days', 'YYYY-MM-DD') FROM trades")
PART_ROWS=$(q bench "SELECT count(*) FROM trades WHERE entry_time >= '$WHOLE' AND entry_time < '$MID'")
PART_TABLE=$(q bench "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'trades'::regclass AND pg_get_expr(c.relpartbound, c.oid) LIKE '%''$WHOLE%' LIMIT 1")
for i in $(seq "$REPS"); do
  q postgres "DROP DATABASE IF EXISTS arch_ops" >/dev/null; q postgres "CREATE DATABASE arch_ops TEMPLATE arch_template" >/dev/null
  OPSCTL_DATABASE_URL="$(url_for arch_ops)" measure archive_whole_months "$OPSCTL" archive --before "$WHOLE" --format json
  cp "$WORK/last.out" "$WORK/archive_whole.json"
  OPSCTL_DATABASE_URL="$(url_for arch_ops)" measure archive_partial_month "$OPSCTL" archive --before "$MID" --format json --batch-size 50000
  q postgres "DROP DATABASE IF EXISTS arch_hand" >/dev/null; q postgres "CREATE DATABASE arch_hand TEMPLATE arch_template" >/dev/null
  q arch_hand "CREATE TABLE hand_archive (LIKE trades)" >/dev/null
  measure hand_cte_move psql -X -q -d arch_hand -c "WITH moved AS (DELETE FROM trades WHERE entry_time >= '$WHOLE' AND entry_time < '$MID' RETURNING *) INSERT INTO hand_archive SELECT * FROM moved"
done
LOCK_MS=$(grep -o '"max_live_lock_ms"[^,}]*' "$WORK/archive_whole.json" | head -1 | grep -o '[0-9.]*$' || true)

# ---------------------------------------------------------------- health on 500 partitions
log "health on a database with 500 partitions"
q postgres "DROP DATABASE IF EXISTS parts" >/dev/null; q postgres "CREATE DATABASE parts" >/dev/null
OPSCTL_DATABASE_URL="$(url_for parts)" "$OPSCTL" migrate up >/dev/null
q parts "DO \$\$ BEGIN FOR m IN 0..499 LOOP EXECUTE format('CREATE TABLE trades_bench_%s PARTITION OF trades FOR VALUES FROM (%L) TO (%L)', m, timestamp '1990-01-01' + make_interval(months => m), timestamp '1990-01-01' + make_interval(months => m + 1)); END LOOP; END \$\$" >/dev/null
for i in $(seq $(( REPS * 2 ))); do
  OPSCTL_DATABASE_URL="$(url_for parts)" measure health_500_partitions sh -c "'$OPSCTL' health --format json >/dev/null; true"
done

# ---------------------------------------------------------------- audit trigger cost
log "trade insert throughput with and without the audit trigger (pgbench, 10 s each)"
INSERTS="$WORK/insert.sql"
cat > "$INSERTS" <<'SQL'
\set uid random(1, 1000)
INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, entry_time) VALUES ('b' || nextval('bench_ids'), :uid, 'BTCUSDT', 'long', 1.5, 42000.12345678, now() - interval '1 day');
SQL
q bench "CREATE SEQUENCE IF NOT EXISTS bench_ids" >/dev/null
# Commit latency (fsync) would hide the trigger's cost: measure the insert path itself.
q bench "ALTER DATABASE bench SET synchronous_commit = off" >/dev/null
tps() { "$BIN/pgbench" -n -c 2 -j 2 -T "${1}" -f "$INSERTS" -d bench 2>/dev/null | awk '/^tps/ {print int($3)}'; }
HAS_AUDIT=$(q bench "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'trades'::regclass AND NOT tgisinternal")
BENCH_SECS=$(( ROWS >= 100000 ? 10 : 1 ))
TPS_WITH=$(tps "$BENCH_SECS")
q bench "ALTER TABLE trades DISABLE TRIGGER USER" >/dev/null
TPS_WITHOUT=$(tps "$BENCH_SECS")
q bench "ALTER TABLE trades ENABLE TRIGGER USER" >/dev/null

# ---------------------------------------------------------------- memory at twice the data
log "peak RSS at twice the data"
make_trading_db bench2x $(( ROWS * 2 ))
rm -rf "$WORK/repo2"; mkdir -p "$WORK/repo2"
OPSCTL_DATABASE_URL="$(url_for bench2x)" measure backup_create_2x "$OPSCTL" backup create --dir "$WORK/repo2" --key-file "$KEY"
B2=$(find "$WORK/repo2" -name '*.opsbak' | head -1)
measure backup_verify_2x "$OPSCTL" backup verify "$B2" --key-file "$KEY"
q postgres "DROP DATABASE IF EXISTS r_2x" >/dev/null
measure restore_2x "$OPSCTL" restore "$B2" --key-file "$KEY" --target-db r_2x --create

# ---------------------------------------------------------------- report
mkdir -p "$(dirname "$OUT")"
M() { median "$1"; }
R() { printf '%s MiB' "$(awk -v k="$(maxcol "$1")" 'BEGIN {printf "%.1f", k/1024}')"; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { if (v == "n/a") print "n/a"; else if (v+0 <= t+0) print "met"; else print "MISSED" }'; }
CREATE_RATIO=$(ratio "$(M backup_create)" "$(M hand_dump_openssl)")
SIZE_RATIO=$(ratio "$SIZE_OPS" "$SIZE_HAND")
RESTORE_RATIO=$(ratio "$(M restore)" "$(M hand_pg_restore)")
IMPORT_RATIO=$(ratio "$(M import_on)" "$(M hand_psql_copy_on)")
IMPORT_RATIO_OFF=$(ratio "$(M import_off)" "$(M hand_psql_copy_off)")
ARCH_RATIO=$(ratio "$(M archive_partial_month)" "$(M hand_cte_move)")
IMPORT_RATE=$(awk -v r="$IMPORT_ROWS" -v s="$(M import_on)" 'BEGIN {printf "%d", r/s}')
IMPORT_RATE_OFF=$(awk -v r="$IMPORT_ROWS" -v s="$(M import_off)" 'BEGIN {printf "%d", r/s}')
COPY_RATE_OFF=$(awk -v r="$IMPORT_ROWS" -v s="$(M hand_psql_copy_off)" 'BEGIN {printf "%d", r/s}')
RATE_VERDICT=$(awk -v r="$IMPORT_RATE_OFF" 'BEGIN { if (r >= 100000) print "met"; else print "MISSED" }')
VERIFY_RATE=$(awk -v b="$PLAIN_SIZE" -v s="$(M backup_verify)" 'BEGIN {printf "%.0f", b/s/1048576}')
AUDIT_COST=$(awk -v a="$TPS_WITH" -v b="$TPS_WITHOUT" 'BEGIN { if (b+0==0) print "n/a"; else printf "%.0f%%", (1 - a/b) * 100 }')
{
  echo "## Results: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $("$BIN/postgres" --version). Data: $ROWS trades ($DB_SIZE), $REPS rounds, medians."
  echo "Command: \`scripts/bench.sh --rows $ROWS --reps $REPS\`"
  echo
  echo "| measurement | opsctl | by hand | ratio | target | verdict |"
  echo "|---|---|---|---|---|---|"
  echo "| backup create (s) | $(M backup_create) | $(M hand_dump_openssl) (pg_dump -Fc \| openssl enc) | $CREATE_RATIO | ≤ 0.8 | $(verdict "$CREATE_RATIO" 0.8) |"
  echo "| backup file size (bytes) | $SIZE_OPS | $SIZE_HAND | $SIZE_RATIO | ≤ 1.10 | $(verdict "$SIZE_RATIO" 1.10) |"
  echo "| backup verify (s) | $(M backup_verify) ($VERIFY_RATE MiB/s of dump) | – | – | – | – |"
  echo "| restore (s) | $(M restore) | $(M hand_pg_restore) (pg_restore, plain dump) | $RESTORE_RATIO | ≤ 1.15 | $(verdict "$RESTORE_RATIO" 1.15) |"
  echo "| import $IMPORT_ROWS trades, audit trigger on (s) | $(M import_on) ($IMPORT_RATE rows/s) | $(M hand_psql_copy_on) (psql \\copy CSV) | $IMPORT_RATIO | ≤ 1.5 | $(verdict "$IMPORT_RATIO" 1.5) |"
  echo "| import $IMPORT_ROWS trades, issue 3's schema: trigger off (s) | $(M import_off) ($IMPORT_RATE_OFF rows/s) | $(M hand_psql_copy_off) ($COPY_RATE_OFF rows/s) | $IMPORT_RATIO_OFF | ≤ 1.5; ≥ 100k rows/s | $(verdict "$IMPORT_RATIO_OFF" 1.5); rate $RATE_VERDICT |"
  echo "| archive 6 whole months, $WHOLE_ROWS rows (s) | $(M archive_whole_months) (max lock hold ${LOCK_MS:-?} ms) | – | – | < 1 s, lock < 100 ms | $(verdict "$(M archive_whole_months)" 1) |"
  echo "| archive partial month, $PART_ROWS rows (s) | $(M archive_partial_month) | $(M hand_cte_move) (one WITH moved AS (DELETE … RETURNING *) INSERT) | $ARCH_RATIO | ≤ 1.5 | $(verdict "$ARCH_RATIO" 1.5) |"
  echo "| health, 500 partitions (s) | $(M health_500_partitions) | – | – | < 1 s | $(verdict "$(M health_500_partitions)" 1) |"
  echo "| trade inserts/s, audit trigger on / off | $TPS_WITH / $TPS_WITHOUT | – | cost $AUDIT_COST | – | (user triggers: $HAS_AUDIT) |"
  echo
  echo "Peak RSS (max over rounds), at $ROWS trades and at twice that:"
  echo
  echo "| command | RSS | RSS at 2× data |"
  echo "|---|---|---|"
  echo "| backup create | $(R backup_create) | $(R backup_create_2x) |"
  echo "| backup verify | $(R backup_verify) | $(R backup_verify_2x) |"
  echo "| restore | $(R restore) | $(R restore_2x) |"
  echo "| import | $(R import_on) | – |"
  echo "| archive (whole months) | $(R archive_whole_months) | – |"
  echo "| archive (partial month) | $(R archive_partial_month) | – |"
  echo "| health (500 partitions) | $(R health_500_partitions) | – |"
} | tee "$OUT"

# ---------------------------------------------------------------- WAL archiving (scripts/bench-wal.sh)
log "WAL archiving"
scripts/bench-wal.sh --opsctl "$OPSCTL" --out "$(dirname "$OUT")/wal-latest.md"
