#!/usr/bin/env bash
# opsctl's benchmark suite: opsctl against what a user would do by hand, in one run,
# every comparison alternated round by round (A B C D A B C D …) so that the load of a
# shared machine hits every side alike; medians, ratios, peak RSS, the load average.
#
#   scripts/bench.sh [--trades N] [--reps R] [--only PARTS] [--zstd-level L] [--opsctl PATH] [--out FILE]
#   (or BENCH_TRADES, BENCH_REPS, BENCH_ONLY, BENCH_ZSTD_LEVEL, BENCH_OPSCTL, BENCH_OUT;
#   --rows = --trades; --zstd-level: opsctl's zstd side runs with --compression-level L;
#   BENCH_WAL=0 leaves out the WAL archiving bench that otherwise runs last)
#   scripts/bench.sh --wal-only [--reps R] [--seconds S] [--opsctl PATH]   (scripts/bench-wal.sh)
#   scripts/bench.sh --only pitr [--trades N] [--reps R]   (scripts/bench-pitr.sh alone; BENCH_RPO_SECONDS)
#
# Two data sets of N trades (seeded, over 24 months, 1,000 users), both through the schema
# as shipped (`opsctl migrate up`, monthly partitions by `opsctl partition ensure`):
#   audit — the trades inserted with the audit trigger on, as the application writes
#           them: audit.logged_actions holds one jsonb row image per trade (real data);
#   lean  — the same trades with the trigger disabled while loading (the data set of
#           the earlier figures, kept so both are visible).
# Parts (--only a comma list; default all):
#   backup   backup create (zstd, the default) vs `pg_dump -Fc | openssl enc`, the floor
#            `pg_dump -Fc -Z0 > file` and opsctl with gzip, on both data sets
#   restore  restore (zstd) vs pg_restore of an unencrypted custom dump vs restore (gzip),
#            and backup verify zstd vs gzip (decryption + decompression alone)
#   import   import N/2 trades vs psql \copy CSV, audit trigger on and off
#   archive  whole months and a partial month vs one hand-written move
#   health   `opsctl health` on 500 partitions
#   inserts  trade inserts/s with and without the audit trigger (pgbench)
#   memory   peak RSS of create/verify/restore at twice the data (should not grow)
#   s3       on the audit data set: backup create and restore with a local directory
#            repository vs the loopback S3 server (s3s-fs), peak RSS of each, and the
#            throughput of `backup copy` between the two repositories
#   pitr     point-in-time recovery (scripts/bench-pitr.sh, its own archiving cluster; not
#            in the default set: its RPO run alone takes BENCH_RPO_SECONDS, default 180):
#            RPO after a crash, RTO physical vs logical, basebackup vs pg_basebackup by hand
# Defaults: 100,000 trades, 3 rounds (a few minutes). Builds opsctl in release mode unless
# --opsctl is given. A throwaway TLS cluster is started under a temp dir and removed at
# the end. Report: markdown on stdout and in --out (default benches/results/latest.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TRADES="${BENCH_TRADES:-100000}"
REPS="${BENCH_REPS:-3}"
ONLY="${BENCH_ONLY:-all}"
OPSCTL="${BENCH_OPSCTL:-}"
OUT="${BENCH_OUT:-benches/results/latest.md}"
ZSTD_LEVEL="${BENCH_ZSTD_LEVEL:-}"
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --trades|--rows) TRADES="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --zstd-level) ZSTD_LEVEL="$2"; shift 2 ;;
    --opsctl) OPSCTL="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --wal-only) shift; exec scripts/bench-wal.sh "$@" ;;
    *) die "unknown argument $1 (use --trades N --reps R --only PARTS --opsctl PATH --out FILE)" ;;
  esac
done
ALL_PARTS="backup restore import archive health inserts memory s3"
[ "$ONLY" = all ] && ONLY="${ALL_PARTS// /,}"
for p in ${ONLY//,/ }; do
  [[ " $ALL_PARTS pitr " == *" $p "* ]] || die "unknown part $p (parts: $ALL_PARTS pitr)"
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
# pitr alone: scripts/bench-pitr.sh, with its own cluster (its report beside --out).
PITR_ARGS=(--trades "$TRADES" --reps "$REPS" --out "$(dirname "$OUT")/pitr-latest.md")
[ -z "$OPSCTL" ] || PITR_ARGS+=(--opsctl "$OPSCTL")
[ "$ONLY" != pitr ] || exec scripts/bench-pitr.sh "${PITR_ARGS[@]}"
ROWS="$TRADES"
install_deps
OPSCTL="$(bench_opsctl "$OPSCTL")"

WORK="$(mktemp -d /tmp/opsctl-bench.XXXXXX)"
chmod 755 "$WORK"
S3_PID=""
trap '[ -z "$S3_PID" ] || kill "$S3_PID" 2>/dev/null; bench_cleanup "$WORK"' EXIT
bench_cluster "$WORK"
BIN="$PG_BINDIR"
RESULTS="$WORK/results.tsv"
SIZES="$WORK/sizes.tsv"
: > "$RESULTS"; : > "$SIZES"
LOAD_START="$(uptime)"

size_of() { stat -c %s "$1"; }
newest() { find "$1" -name '*.opsbak' | head -1; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k/1024}'; }
mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b/1e6}'; }

# composition DB: the database's tables (partitions summed into their table), largest first.
composition() {
  echo "| table (the 8 largest, partitions included) | rows | size (with indexes, TOAST) | share |"
  echo "|---|---|---|---|"
  q "$1" "WITH t AS (
      SELECT coalesce(pg_partition_root(c.oid), c.oid) AS root, pg_total_relation_size(c.oid) AS bytes
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')),
    top AS (SELECT root, sum(bytes) AS bytes FROM t GROUP BY root ORDER BY 2 DESC LIMIT 8)
    SELECT '| ' || top.root::regclass || ' | '
           || to_char((xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %s',
                top.root::regclass), false, true, '')))[1]::text::bigint, 'FM999,999,999') || ' | '
           || pg_size_pretty(top.bytes) || ' | '
           || round(100 * top.bytes / pg_database_size(current_database()))::text || ' % |'
    FROM top ORDER BY top.bytes DESC"
  echo "| (whole database) | | $(q "$1" "SELECT pg_size_pretty(pg_database_size(current_database()))") | 100 % |"
}

DATASETS=()
if want backup || want restore; then DATASETS=(audit lean); elif want s3; then DATASETS=(audit); fi
if want import || want archive || want inserts; then
  [[ " ${DATASETS[*]} " == *" lean "* ]] || DATASETS+=(lean)
fi
for ds in "${DATASETS[@]}"; do
  log "loading $ROWS trades, audit trigger $([ "$ds" = audit ] && echo on || echo off) (data set $ds)"
  make_trading_db "bench_$ds" "$ROWS" "$([ "$ds" = audit ] && echo on || echo off)"
done
# The earlier parts of the suite (import, archive, inserts) use the lean data set.
[ -z "$(q postgres "SELECT 1 FROM pg_database WHERE datname = 'bench_lean'")" ] \
  || q postgres "ALTER DATABASE bench_lean RENAME TO bench" >/dev/null
db_of() { [ "$1" = lean ] && echo bench || echo "bench_$1"; }
KEY="$WORK/backup.key"; "$OPSCTL" backup keygen --out "$KEY" >/dev/null
openssl rand -hex 32 > "$WORK/openssl.pass"
export OPSCTL_DATABASE_URL
OPSCTL_DATABASE_URL="$(url_for bench)"

# ---------------------------------------------------------------- backup create
# One round: A opsctl (zstd, the default) · B pg_dump -Fc | openssl · C pg_dump -Fc -Z0
# (the floor) · D opsctl with gzip; the files of the last round are kept for restore.
backup_round() {
  local ds="$1" db; db=$(db_of "$1")
  rm -rf "$WORK/repo-$ds-zstd" "$WORK/repo-$ds-gzip"
  OPSCTL_DATABASE_URL="$(url_for "$db")" measure "$ds:opsctl_zstd" \
    "$OPSCTL" backup create --dir "$WORK/repo-$ds-zstd" --key-file "$KEY" ${ZSTD_LEVEL:+--compression-level "$ZSTD_LEVEL"}
  measure "$ds:hand" sh -c "'$BIN/pg_dump' -Fc -d $db | openssl enc -aes-256-cbc -pbkdf2 -pass file:'$WORK/openssl.pass' > '$WORK/hand-$ds.dump.enc'"
  measure "$ds:floor" sh -c "'$BIN/pg_dump' -Fc -Z0 -d $db > '$WORK/floor-$ds.dump'"
  OPSCTL_DATABASE_URL="$(url_for "$db")" measure "$ds:opsctl_gzip" \
    "$OPSCTL" backup create --dir "$WORK/repo-$ds-gzip" --key-file "$KEY" --compression gzip
  printf '%s:opsctl_zstd\t%s\n%s:hand\t%s\n%s:floor\t%s\n%s:opsctl_gzip\t%s\n' \
    "$ds" "$(size_of "$(newest "$WORK/repo-$ds-zstd")")" "$ds" "$(size_of "$WORK/hand-$ds.dump.enc")" \
    "$ds" "$(size_of "$WORK/floor-$ds.dump")" "$ds" "$(size_of "$(newest "$WORK/repo-$ds-gzip")")" >> "$SIZES"
  rm -f "$WORK/floor-$ds.dump"
}
if want backup; then
  for i in $(seq "$REPS"); do
    for ds in audit lean; do
      log "backup create, data set $ds, round $i of $REPS: opsctl zstd · hand · floor · opsctl gzip"
      backup_round "$ds"
    done
  done
fi

# ---------------------------------------------------------------- restore
# One round: opsctl restore (zstd) · pg_restore of an unencrypted custom-format dump
# (pg_dump's default compression) · opsctl restore (gzip) · verify zstd · verify gzip;
# each restore into a freshly created empty database.
if want restore; then
  for ds in audit lean; do
    db=$(db_of "$ds")
    [ -n "$(newest "$WORK/repo-$ds-zstd" 2>/dev/null)" ] || {
      OPSCTL_DATABASE_URL="$(url_for "$db")" "$OPSCTL" backup create --dir "$WORK/repo-$ds-zstd" --key-file "$KEY" >/dev/null
      OPSCTL_DATABASE_URL="$(url_for "$db")" "$OPSCTL" backup create --dir "$WORK/repo-$ds-gzip" --key-file "$KEY" --compression gzip >/dev/null
    }
    "$BIN/pg_dump" -Fc -d "$db" -f "$WORK/plain-$ds.dump"
  done
  for i in $(seq "$REPS"); do
    for ds in audit lean; do
      log "restore, data set $ds, round $i of $REPS: opsctl zstd · pg_restore · opsctl gzip · verify zstd · verify gzip"
      Z=$(newest "$WORK/repo-$ds-zstd"); G=$(newest "$WORK/repo-$ds-gzip")
      fresh_db r_bench
      measure "$ds:restore_zstd" "$OPSCTL" restore "$Z" --key-file "$KEY" --target-db r_bench
      [ "$(q r_bench 'SELECT count(*) FROM trades')" = "$ROWS" ] || die "restored row count differs"
      fresh_db r_bench
      measure "$ds:pg_restore" "$BIN/pg_restore" -d r_bench "$WORK/plain-$ds.dump"
      fresh_db r_bench
      measure "$ds:restore_gzip" "$OPSCTL" restore "$G" --key-file "$KEY" --target-db r_bench
      q postgres "DROP DATABASE r_bench" >/dev/null
      measure "$ds:verify_zstd" "$OPSCTL" backup verify "$Z" --key-file "$KEY"
      measure "$ds:verify_gzip" "$OPSCTL" backup verify "$G" --key-file "$KEY"
    done
  done
fi

# ---------------------------------------------------------------- import
if want import; then
  IMPORT_ROWS=$(( ROWS / 2 ))
  log "import of $IMPORT_ROWS trades vs psql \\copy CSV"
  q bench "COPY (SELECT row_to_json(t) FROM (SELECT id, user_id, symbol, side, quantity::text AS quantity, entry_price::text AS entry_price, exit_price::text AS exit_price, to_char(entry_time, 'YYYY-MM-DD HH24:MI:SS') AS entry_time, to_char(exit_time, 'YYYY-MM-DD HH24:MI:SS') AS exit_time, realized_pnl::text AS realized_pnl, commission::text AS commission, model_id FROM trades ORDER BY id LIMIT $IMPORT_ROWS) t) TO STDOUT" > "$WORK/trades.ndjson"
  q bench "COPY (SELECT id, user_id, symbol, side, quantity, entry_price, exit_price, entry_time, exit_time, realized_pnl, commission, model_id FROM trades ORDER BY id LIMIT $IMPORT_ROWS) TO STDOUT WITH (FORMAT csv)" > "$WORK/trades.csv"
  make_trading_db imp_template 0 on
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
fi

# ---------------------------------------------------------------- archive
if want archive; then
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
fi

# ---------------------------------------------------------------- health on 500 partitions
if want health; then
  log "health on a database with 500 partitions"
  q postgres "DROP DATABASE IF EXISTS parts" >/dev/null; q postgres "CREATE DATABASE parts" >/dev/null
  OPSCTL_DATABASE_URL="$(url_for parts)" "$OPSCTL" migrate up >/dev/null
  q parts "DO \$\$ BEGIN FOR m IN 0..499 LOOP EXECUTE format('CREATE TABLE trades_bench_%s PARTITION OF trades FOR VALUES FROM (%L) TO (%L)', m, timestamp '1990-01-01' + make_interval(months => m), timestamp '1990-01-01' + make_interval(months => m + 1)); END LOOP; END \$\$" >/dev/null
  for i in $(seq $(( REPS * 2 ))); do
    OPSCTL_DATABASE_URL="$(url_for parts)" measure health_500_partitions sh -c "'$OPSCTL' health --format json >/dev/null; true"
  done
fi

# ---------------------------------------------------------------- audit trigger cost
if want inserts; then
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
fi

# ---------------------------------------------------------------- memory at twice the data
if want memory; then
  log "peak RSS at twice the data"
  make_trading_db bench2x $(( ROWS * 2 )) off
  rm -rf "$WORK/repo2"; mkdir -p "$WORK/repo2"
  OPSCTL_DATABASE_URL="$(url_for bench2x)" measure backup_create_2x "$OPSCTL" backup create --dir "$WORK/repo2" --key-file "$KEY"
  B2=$(find "$WORK/repo2" -name '*.opsbak' | head -1)
  measure backup_verify_2x "$OPSCTL" backup verify "$B2" --key-file "$KEY"
  q postgres "DROP DATABASE IF EXISTS r_2x" >/dev/null
  measure restore_2x "$OPSCTL" restore "$B2" --key-file "$KEY" --target-db r_2x --create
fi


# ---------------------------------------------------------------- S3 repository (issue 15)
# A loopback S3 server (s3s-fs: an S3 server over a directory that checks SigV4
# signatures, as the tests use it) and a policy with two repositories, `disk` (a local
# directory) and `s3` (s3://bucket/opsctl on that server). On the audit data set, each
# round: backup create to disk · to s3, then restore from disk · from s3 (into a fresh
# database each), then `backup copy` of this round's disk backup to s3 and of the s3 one
# to a second local directory. The order of the two sides flips every round (A B, B A, …).
if want s3; then
  S3BIN="$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")"
  S3_PORT=$(free_port)
  mkdir -p "$WORK/s3/bucket" "$WORK/s3-disk" "$WORK/s3-copies"
  RUST_LOG=error "$S3BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key bench-access \
    --secret-key bench-secret-5eed "$WORK/s3" >/dev/null 2>&1 &
  S3_PID=$!
  for _ in $(seq 100); do (: < "/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break; sleep 0.1; done
  cat > "$WORK/s3-policy.toml" <<TOML
[backup]
key_file = "$KEY"

[[repositories]]
name = "disk"
url = "$WORK/s3-disk"

[[repositories]]
name = "s3"
url = "s3://bucket/opsctl"
endpoint = "http://127.0.0.1:$S3_PORT"
region = "us-east-1"
path_style = true
allow_http = true
TOML
  # The S3 server's credentials and the policy, for the opsctl runs only (`env` execs
  # opsctl in place, so measure polls opsctl's own process).
  S3ENV=(env AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret-5eed OPSCTL_POLICY="$WORK/s3-policy.toml")
  # The S3 server's own CPU (user + sys ticks of s3s-fs): appended to each run's row as
  # column 8, CPU s the server spent during that run (it shares the 2 cores with opsctl).
  s3_ticks() { local st; read -r st < "/proc/$S3_PID/stat"; st=${st##*) }; read -r -a st <<< "$st"; echo $(( st[11] + st[12] )); }
  s3_server_cpu() { awk -v a="$1" -v b="$(s3_ticks)" -v h="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b-a)/h}'; }
  # s3_create SIDE: one backup create into repository SIDE; its id in $WORK/id-SIDE.
  s3_create() {
    local t0; t0=$(s3_ticks)
    OPSCTL_DATABASE_URL="$(url_for bench_audit)" measure "s3:create_$1" "${S3ENV[@]}" "$OPSCTL" backup create --repo "$1"
    sed -i "\$s/\$/\t$(s3_server_cpu "$t0")/" "$RESULTS"
    awk 'NR==1 {print $2}' "$WORK/last.out" > "$WORK/id-$1"
  }
  s3_restore() {
    fresh_db r_s3
    local t0; t0=$(s3_ticks)
    OPSCTL_DATABASE_URL="$(url_for bench_audit)" measure "s3:restore_$1" "${S3ENV[@]}" "$OPSCTL" restore "$(cat "$WORK/id-$1")" --repo "$1" --target-db r_s3
    sed -i "\$s/\$/\t$(s3_server_cpu "$t0")/" "$RESULTS"
    [ "$(q r_s3 'SELECT count(*) FROM trades')" = "$ROWS" ] || die "restored row count differs (from $1)"
  }
  # s3_copy NAME FROM TO: backup copy of this round's FROM backup to TO; bytes in column 9.
  s3_copy() {
    local t0; t0=$(s3_ticks)
    measure "$1" "${S3ENV[@]}" "$OPSCTL" backup copy "$(cat "$WORK/id-$2")" --repo "$2" --to "$3" --format json
    local bytes; bytes=$(grep -o '"bytes": *[0-9]*' "$WORK/last.out" | grep -o '[0-9]*$')
    sed -i "\$s/\$/\t$(s3_server_cpu "$t0")\t$bytes/" "$RESULTS"
  }
  for i in $(seq "$REPS"); do
    if [ $(( i % 2 )) -eq 1 ]; then SIDES="disk s3"; else SIDES="s3 disk"; fi
    log "S3 repository, round $i of $REPS ($SIDES): backup create · restore · backup copy"
    for side in $SIDES; do s3_create "$side"; done
    for side in $SIDES; do s3_restore "$side"; done
    s3_copy s3:copy_disk_to_s3 disk s3
    s3_copy s3:copy_s3_to_disk s3 "$WORK/s3-copies"
  done
  q postgres "DROP DATABASE r_s3" >/dev/null
  S3_SIZE=$(stat -c %s "$(newest "$WORK/s3-disk")")
fi

# ---------------------------------------------------------------- report
mkdir -p "$(dirname "$OUT")"
LOAD_END="$(uptime)"
M() { median "$1"; }
R() { mib "$(maxcol "$1")"; }
SZ() { awk -F'\t' -v n="$1" '$1==n {v=$2} END {print v+0}' "$SIZES"; }
# verdict VALUE OP TARGET (OP: le or lt)
verdict() {
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "n/a" || v == "") print "n/a";
    else if ((op == "lt" && v+0 < t+0) || (op == "le" && v+0 <= t+0)) print "met";
    else print "**MISSED**" }'
}
CPU() { median "$1" 4; }
OWN() { median "$1" 6; }
LOAD() { median "$1" 5; }
{
  echo "## Results: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB, $("$BIN/postgres" --version), opsctl $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo "Command: \`$(env | grep -E '^BENCH_' | sort | tr '\n' ' ')scripts/bench.sh $ARGS\` ($ROWS trades, $REPS rounds, parts $ONLY, alternated, medians)."
  echo "Load at start: \`${LOAD_START#*load average: }\`; at end: \`${LOAD_END#*load average: }\` (1, 5, 15 min; the machine may be shared)."
  echo
  if want backup || want restore; then
    for ds in audit lean; do
      db=$(db_of "$ds")
      echo "### Data set \`$ds\`: $ROWS trades, audit trigger $([ "$ds" = audit ] && echo 'on while loading (as the application writes)' || echo 'off while loading (the earlier data set)')"
      echo
      composition "$db"
      echo
      if want backup; then
        H=$(M "$ds:hand"); F=$(M "$ds:floor"); HS=$(SZ "$ds:hand")
        echo "| backup create | wall s | × hand | × floor | CPU s, all processes / opsctl's own | file | × hand size | peak RSS, own / largest process | load |"
        echo "|---|---|---|---|---|---|---|---|---|"
        for v in opsctl_zstd hand floor opsctl_gzip; do
          case $v in
            opsctl_zstd) label="\`opsctl backup create\` (zstd ${ZSTD_LEVEL:-3}$([ -n "$ZSTD_LEVEL" ] && echo ", --compression-level $ZSTD_LEVEL" || echo ", default"))" ;;
            hand) label='`pg_dump -Fc \| openssl enc -aes-256-cbc -pbkdf2`' ;;
            floor) label='`pg_dump -Fc -Z0 > file` (floor)' ;;
            opsctl_gzip) label='`opsctl backup create --compression gzip` (3)' ;;
          esac
          own="–"; ocpu="–"; case $v in opsctl_*) own=$(R "$ds:$v"); ocpu=$(OWN "$ds:$v") ;; esac
          echo "| $label | $(M "$ds:$v") | $(ratio "$(M "$ds:$v")" "$H") | $(ratio "$(M "$ds:$v")" "$F") | $(CPU "$ds:$v") / $ocpu | $(mb "$(SZ "$ds:$v")") | $(ratio "$(SZ "$ds:$v")" "$HS") | $own / $(mib "$(maxcol "$ds:$v" 7)") | $(LOAD "$ds:$v") |"
        done
        T1=$(ratio "$(M "$ds:opsctl_zstd")" "$H"); T2=$(ratio "$(M "$ds:opsctl_zstd")" "$F")
        S1=$(ratio "$(SZ "$ds:opsctl_zstd")" "$HS"); RSSK=$(maxcol "$ds:opsctl_zstd")
        echo
        echo "| target (issue 16), opsctl zstd | measured | verdict |"
        echo "|---|---|---|"
        echo "| time ≤ 0.70× hand pipeline | $T1 | $(verdict "$T1" le 0.70) |"
        echo "| time ≤ 1.15× floor | $T2 | $(verdict "$T2" le 1.15) |"
        echo "| size ≤ 1.10× hand pipeline | $S1 | $(verdict "$S1" le 1.10) |"
        echo "| peak RSS < 32 MiB | $(mib "$RSSK") | $(verdict "$(awk -v k="$RSSK" 'BEGIN {print k/1024}')" lt 32) |"
        echo
      fi
      if want restore; then
        P=$(M "$ds:pg_restore")
        echo "| restore | wall s | × pg_restore | CPU s of opsctl's own process | peak RSS (own) | load |"
        echo "|---|---|---|---|---|---|"
        echo "| \`opsctl restore\` (zstd backup) | $(M "$ds:restore_zstd") | $(ratio "$(M "$ds:restore_zstd")" "$P") | $(OWN "$ds:restore_zstd") | $(R "$ds:restore_zstd") | $(LOAD "$ds:restore_zstd") |"
        echo "| \`pg_restore -d\` of an unencrypted \`pg_dump -Fc\` | $P | 1.00 | – | $(R "$ds:pg_restore") | $(LOAD "$ds:pg_restore") |"
        echo "| \`opsctl restore\` (gzip backup) | $(M "$ds:restore_gzip") | $(ratio "$(M "$ds:restore_gzip")" "$P") | $(OWN "$ds:restore_gzip") | $(R "$ds:restore_gzip") | $(LOAD "$ds:restore_gzip") |"
        echo "| \`opsctl backup verify\` (zstd) | $(M "$ds:verify_zstd") | – | $(OWN "$ds:verify_zstd") | $(R "$ds:verify_zstd") | $(LOAD "$ds:verify_zstd") |"
        echo "| \`opsctl backup verify\` (gzip) | $(M "$ds:verify_gzip") | – | $(OWN "$ds:verify_gzip") | $(R "$ds:verify_gzip") | $(LOAD "$ds:verify_gzip") |"
        RR=$(ratio "$(M "$ds:restore_zstd")" "$P")
        ZG=$(ratio "$(M "$ds:restore_zstd")" "$(M "$ds:restore_gzip")")
        ZGC=$(ratio "$(OWN "$ds:restore_zstd")" "$(OWN "$ds:restore_gzip")")
        VG=$(ratio "$(M "$ds:verify_zstd")" "$(M "$ds:verify_gzip")")
        echo
        echo "| target (issue 16) | measured | verdict |"
        echo "|---|---|---|"
        echo "| restore ≤ 1.05× pg_restore | $RR | $(verdict "$RR" le 1.05) |"
        echo "| restore zstd at least as fast as gzip: wall / opsctl CPU | $ZG / $ZGC | $(verdict "$ZG" le 1.00) / $(verdict "$ZGC" le 1.00) |"
        echo "| verify (decrypt + decompress) zstd / gzip | $VG | $(verdict "$VG" le 1.00) |"
        echo
      fi
    done
  fi
  if want import || want archive || want health || want inserts; then
    echo "### The rest of the suite (data set \`lean\`)"
    echo
    echo "| measurement | opsctl | by hand | ratio | target | verdict |"
    echo "|---|---|---|---|---|---|"
  fi
  if want import; then
    IMPORT_RATIO=$(ratio "$(M import_on)" "$(M hand_psql_copy_on)")
    IMPORT_RATIO_OFF=$(ratio "$(M import_off)" "$(M hand_psql_copy_off)")
    IMPORT_RATE=$(awk -v r="$IMPORT_ROWS" -v s="$(M import_on)" 'BEGIN {printf "%d", r/s}')
    IMPORT_RATE_OFF=$(awk -v r="$IMPORT_ROWS" -v s="$(M import_off)" 'BEGIN {printf "%d", r/s}')
    COPY_RATE_OFF=$(awk -v r="$IMPORT_ROWS" -v s="$(M hand_psql_copy_off)" 'BEGIN {printf "%d", r/s}')
    RATE_VERDICT=$(awk -v r="$IMPORT_RATE_OFF" 'BEGIN { if (r >= 100000) print "met"; else print "MISSED" }')
    echo "| import $IMPORT_ROWS trades, audit trigger on (s) | $(M import_on) ($IMPORT_RATE rows/s) | $(M hand_psql_copy_on) (psql \\copy CSV) | $IMPORT_RATIO | ≤ 1.5 | $(verdict "$IMPORT_RATIO" le 1.5) |"
    echo "| import $IMPORT_ROWS trades, issue 3's schema: trigger off (s) | $(M import_off) ($IMPORT_RATE_OFF rows/s) | $(M hand_psql_copy_off) ($COPY_RATE_OFF rows/s) | $IMPORT_RATIO_OFF | ≤ 1.5; ≥ 100k rows/s | $(verdict "$IMPORT_RATIO_OFF" le 1.5); rate $RATE_VERDICT |"
  fi
  if want archive; then
    ARCH_RATIO=$(ratio "$(M archive_partial_month)" "$(M hand_cte_move)")
    echo "| archive 6 whole months, $WHOLE_ROWS rows (s) | $(M archive_whole_months) (max lock hold ${LOCK_MS:-?} ms) | – | – | < 1 s, lock < 100 ms | $(verdict "$(M archive_whole_months)" lt 1) |"
    echo "| archive partial month, $PART_ROWS rows (s) | $(M archive_partial_month) | $(M hand_cte_move) (one WITH moved AS (DELETE … RETURNING *) INSERT) | $ARCH_RATIO | ≤ 1.5 | $(verdict "$ARCH_RATIO" le 1.5) |"
  fi
  if want health; then
    echo "| health, 500 partitions (s) | $(M health_500_partitions) | – | – | < 1 s | $(verdict "$(M health_500_partitions)" lt 1) |"
  fi
  if want inserts; then
    AUDIT_COST=$(awk -v a="$TPS_WITH" -v b="$TPS_WITHOUT" 'BEGIN { if (b+0==0) print "n/a"; else printf "%.0f%%", (1 - a/b) * 100 }')
    echo "| trade inserts/s, audit trigger on / off | $TPS_WITH / $TPS_WITHOUT | – | cost $AUDIT_COST | – | (user triggers: $HAS_AUDIT) |"
  fi
  echo
  if want memory; then
    echo "Peak RSS of opsctl's own process (max over rounds), data set \`lean\`, at $ROWS trades and at twice that:"
    echo
    echo "| command | RSS | RSS at 2× data |"
    echo "|---|---|---|"
    echo "| backup create | $(R lean:opsctl_zstd) | $(R backup_create_2x) |"
    echo "| backup verify | $(R lean:verify_zstd) | $(R backup_verify_2x) |"
    echo "| restore | $(R lean:restore_zstd) | $(R restore_2x) |"
    want import && echo "| import | $(R import_on) | – |"
    want archive && echo "| archive (whole months) | $(R archive_whole_months) | – |"
    want archive && echo "| archive (partial month) | $(R archive_partial_month) | – |"
    echo
  fi
  if want s3; then
    CD=$(M s3:create_disk); CS=$(M s3:create_s3); RD=$(M s3:restore_disk); RS=$(M s3:restore_s3)
    # mbs NAME: MB/s of the NAME copies (bytes in column 9 / median wall s).
    SRV() { median "$1" 8; }
    mbs() { awk -v b="$(maxcol "$1" 9)" -v s="$(M "$1")" 'BEGIN { if (s+0 == 0) print "n/a"; else printf "%.1f", b/1e6/s }'; }
    echo "### S3 repository (issue 15): data set \`audit\`, $ROWS trades, local directory vs loopback S3 (s3s-fs)"
    echo
    echo "Backup object: $(mb "$S3_SIZE") (zstd 3 + AES-256-GCM). S3 repository: s3s-fs 0.14.1 on 127.0.0.1 (plain HTTP, SigV4 checked), object_store multipart, part_size 8 MiB, concurrency 3 (the defaults). Sides alternated, order flipped each round."
    echo
    echo "| command | local directory: wall s | S3: wall s | S3 / local | peak RSS (own), local / S3 | CPU s (own), local / S3 | S3 server's CPU s | load |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| \`backup create --repo\` | $CD | $CS | $(ratio "$CS" "$CD") | $(R s3:create_disk) / $(R s3:create_s3) | $(OWN s3:create_disk) / $(OWN s3:create_s3) | $(SRV s3:create_s3) | $(LOAD s3:create_disk) / $(LOAD s3:create_s3) |"
    echo "| \`restore ID --repo\` (fresh database) | $RD | $RS | $(ratio "$RS" "$RD") | $(R s3:restore_disk) / $(R s3:restore_s3) | $(OWN s3:restore_disk) / $(OWN s3:restore_s3) | $(SRV s3:restore_s3) | $(LOAD s3:restore_disk) / $(LOAD s3:restore_s3) |"
    echo
    echo "| \`backup copy ID --to\` (read back and checked) | wall s | throughput | peak RSS (own) | S3 server's CPU s | load |"
    echo "|---|---|---|---|---|---|"
    echo "| local directory → S3 | $(M s3:copy_disk_to_s3) | $(mbs s3:copy_disk_to_s3) MB/s | $(R s3:copy_disk_to_s3) | $(SRV s3:copy_disk_to_s3) | $(LOAD s3:copy_disk_to_s3) |"
    echo "| S3 → local directory | $(M s3:copy_s3_to_disk) | $(mbs s3:copy_s3_to_disk) MB/s | $(R s3:copy_s3_to_disk) | $(SRV s3:copy_s3_to_disk) | $(LOAD s3:copy_s3_to_disk) |"
    echo
    RSS_MAX=$(for n in s3:create_disk s3:create_s3 s3:restore_disk s3:restore_s3 s3:copy_disk_to_s3 s3:copy_s3_to_disk; do maxcol "$n"; done | sort -n | tail -1)
    echo "| target (issue 15) | measured | verdict |"
    echo "|---|---|---|"
    echo "| backup create to S3 ≤ 1.15× to a local directory | $(ratio "$CS" "$CD") | $(verdict "$(ratio "$CS" "$CD")" le 1.15) |"
    echo "| restore from S3 ≤ 1.15× from a local directory | $(ratio "$RS" "$RD") | $(verdict "$(ratio "$RS" "$RD")" le 1.15) |"
    echo "| peak RSS < 64 MiB (largest of the six commands) | $(mib "$RSS_MAX") | $(verdict "$(awk -v k="$RSS_MAX" 'BEGIN {print k/1024}')" lt 64) |"
    echo
  fi
  echo "<details><summary>Raw runs: name, wall s, peak RSS KiB (own process), CPU s (all processes), 1-min load at start, CPU s (own process), peak RSS KiB (largest process)[, S3 server's CPU s, bytes copied]</summary>"
  echo
  echo '```'
  cat "$RESULTS"
  echo '```'
  echo
  echo "Sizes (bytes, last round):"
  echo
  echo '```'
  cat "$SIZES"
  echo '```'
  echo "</details>"
} | tee "$OUT"

# ---------------------------------------------------------------- PITR (scripts/bench-pitr.sh)
if want pitr; then
  log "point-in-time recovery"
  scripts/bench-pitr.sh "${PITR_ARGS[@]:0:6}" --opsctl "$OPSCTL"
fi

# ---------------------------------------------------------------- WAL archiving (scripts/bench-wal.sh)
# BENCH_WAL=0 leaves it out (e.g. when only the s3 part is wanted).
if [ "${BENCH_WAL:-1}" != 0 ]; then
  log "WAL archiving"
  scripts/bench-wal.sh --opsctl "$OPSCTL" --out "$(dirname "$OUT")/wal-latest.md"
fi
