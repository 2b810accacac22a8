#!/usr/bin/env bash
# WAL archiving bench (scripts/bench.sh --wal-only runs it alone; the full bench runs it
# last): a throwaway cluster with archive_mode on and archive_command = opsctl wal push.
#
#  1. `opsctl wal push` of one busy 16 MiB segment (pgbench WAL) into a local repository
#     against `gzip -1 | openssl enc -aes-256-cbc -pbkdf2` of the same segment by hand,
#     both made durable (fsync) like an archive must be; --reps runs each, medians.
#  2. Sustained archiving under pgbench (TPC-B clients beside bulk-insert clients, so WAL
#     is written faster than one segment a second): WAL written per second, segments
#     archived per second, how many wait in archive_status at the end, time to drain.
#
#   scripts/bench-wal.sh [--reps R] [--seconds S] [--opsctl PATH] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

REPS=5
SECONDS_LOAD=60
OPSCTL=""
OUT="benches/results/wal-latest.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --seconds) SECONDS_LOAD="$2"; shift 2 ;;
    --opsctl) OPSCTL="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) die "unknown argument $1 (use --reps R --seconds S --opsctl PATH --out FILE)" ;;
  esac
done
install_deps
OPSCTL="$(bench_opsctl "$OPSCTL")"

W="$(mktemp -d /tmp/opsctl-bench-wal.XXXXXX)"
chmod 755 "$W"
BIN="$PG_BINDIR"
stop_cluster() { [ -f "$W/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$W/data" stop -m immediate >/dev/null 2>&1 || true; }
trap 'stop_cluster; rm -rf "$W"' EXIT

"$OPSCTL" backup keygen --out "$W/wal.key" >/dev/null
mkdir -p "$W/repo" "$W/sock"
printf '[backup]\ndir = "%s"\nkey_file = "%s"\n' "$W/repo" "$W/wal.key" > "$W/policy.toml"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$W"
as_pg "$BIN/initdb" -D "$W/data" -U postgres --auth=trust --no-sync >/dev/null
PORT=$(free_port)
cat >> "$W/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$W/sock'
wal_level = replica
archive_mode = on
archive_command = '$OPSCTL wal push %p --policy $W/policy.toml'
max_wal_size = 4GB
synchronous_commit = off
EOF
as_pg "$BIN/pg_ctl" -D "$W/data" -l "$W/server.log" -w start >/dev/null
export PGHOST="$W/sock" PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
q() { psql -X -q -tA -v ON_ERROR_STOP=1 -c "$1"; }

log "pgbench data (scale 20)"
"$BIN/pgbench" -q -i -s 20 >/dev/null 2>&1

# ---------------------------------------------------------------- 1. one busy segment
# A segment full of pgbench updates (WAL written after the load, so not zeros).
"$BIN/pgbench" -n -c 2 -j 2 -T 10 >/dev/null 2>&1
PREV=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
q "SELECT pg_switch_wal()" >/dev/null
sleep 1
cp "$W/data/pg_wal/$PREV" "$W/segment" 2>/dev/null || die "segment $PREV already recycled"
mkdir -p "$W/one"
RESULTS="$W/results.tsv"; : > "$RESULTS"
timeit() { # NAME CMD...: wall seconds appended
  local name="$1"; shift
  /usr/bin/time -f "%e %M" -o "$W/t" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; die "$name failed"; }
  printf '%s\t%s\t%s\n' "$name" $(cat "$W/t") >> "$RESULTS"
}
median() { awk -F'\t' -v n="$1" '$1==n {print $2}' "$RESULTS" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
maxrss() { awk -F'\t' -v n="$1" '$1==n {if ($3>m) m=$3} END {print m+0}' "$RESULTS"; }
openssl rand -hex 32 > "$W/pass"
log "wal push of one 16 MiB segment vs gzip -1 | openssl enc, $REPS times each"
mkdir -p "$W/one/repo" "$W/one/seg"
cp "$W/segment" "$W/one/seg/$PREV"
# The first push records the archive's cluster (wal/archive.json); the timed ones do not.
"$OPSCTL" wal push "$W/one/seg/$PREV" --repo "$W/one/repo" --key-file "$W/wal.key"
OBJ=$(find "$W/one/repo/wal" -type f -name "$PREV")
for i in $(seq "$REPS"); do
  rm -f "$OBJ"; sync
  timeit push "$OPSCTL" wal push "$W/one/seg/$PREV" --repo "$W/one/repo" --key-file "$W/wal.key"
  timeit hand sh -c "gzip -1 < '$W/segment' | openssl enc -aes-256-cbc -pbkdf2 -pass file:'$W/pass' > '$W/one/hand$i' && sync '$W/one/hand$i'"
  timeit hand_gzip3 sh -c "gzip -3 < '$W/segment' | openssl enc -aes-256-cbc -pbkdf2 -pass file:'$W/pass' > '$W/one/hand3$i' && sync '$W/one/hand3$i'"
  timeit fetch "$OPSCTL" wal fetch "$PREV" "$W/one/back$i" --repo "$W/one/repo" --key-file "$W/wal.key"
  cmp -s "$W/segment" "$W/one/back$i" || die "fetch did not give the segment back"
done
PUSH_SIZE=$(stat -c %s "$OBJ")
HAND_SIZE=$(stat -c %s "$W/one/hand1")

# ---------------------------------------------------------------- 2. sustained
log "sustained archiving under pgbench for ${SECONDS_LOAD}s"
q "SELECT pg_stat_reset_shared('archiver')" >/dev/null
L0=$(q "SELECT pg_current_wal_lsn()")
T0=$(date +%s.%N)
# A WAL-heavy load: each transaction inserts 2,000 rows of ~140 bytes (a bulk writer),
# beside the ordinary pgbench transactions (many small commits).
q "CREATE TABLE IF NOT EXISTS wal_load(id int, pad text)" >/dev/null
echo "INSERT INTO wal_load SELECT g, md5(g::text) || repeat('x', 100) FROM generate_series(1, 2000) g;" > "$W/heavy.sql"
"$BIN/pgbench" -n -c 2 -j 1 -T "$SECONDS_LOAD" >/dev/null 2>&1 &
SMALL=$!
PGB=$("$BIN/pgbench" -n -c 2 -j 1 -T "$SECONDS_LOAD" -f "$W/heavy.sql" 2>/dev/null | awk '/^tps/ {print int($3)}')
wait "$SMALL" || true
T1=$(date +%s.%N)
L1=$(q "SELECT pg_current_wal_lsn()")
ARCH_AT_END=$(q "SELECT archived_count FROM pg_stat_archiver")
READY_AT_END=$(q "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")
WRITTEN=$(q "SELECT round(pg_wal_lsn_diff('$L1', '$L0') / (16*1024*1024.0), 1)")
# Drain: until nothing waits.
while [ "$(q "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")" != 0 ]; do sleep 0.5; done
T2=$(date +%s.%N)
ARCH_TOTAL=$(q "SELECT archived_count FROM pg_stat_archiver")
FAILED=$(q "SELECT failed_count FROM pg_stat_archiver")
"$OPSCTL" wal verify --policy "$W/policy.toml" >/dev/null || die "wal verify found a gap after the load"

rate() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }
LOAD_S=$(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b-a}')
DRAIN_S=$(awk -v a="$T1" -v b="$T2" 'BEGIN {printf "%.1f", b-a}')
ALL_S=$(awk -v a="$T0" -v b="$T2" 'BEGIN {printf "%.1f", b-a}')
mkdir -p "$(dirname "$OUT")"
{
  echo "## WAL archiving ($(date -u +%Y-%m-%d), $(nproc) CPUs, load average $(cut -d' ' -f1 /proc/loadavg))"
  echo
  echo "| one busy 16 MiB segment (median of $REPS) | seconds | peak RSS KiB | stored bytes |"
  echo "|---|---|---|---|"
  echo "| \`opsctl wal push\` (zstd 3 + AES-256-GCM, fsync + rename) | $(median push) | $(maxrss push) | $PUSH_SIZE |"
  echo "| \`gzip -1 \\| openssl enc -aes-256-cbc -pbkdf2\` + sync | $(median hand) | | $HAND_SIZE |"
  echo "| \`gzip -3 \\| openssl enc …\` + sync | $(median hand_gzip3) | | |"
  echo "| \`opsctl wal fetch\` (authenticate, decrypt, write) | $(median fetch) | $(maxrss fetch) | |"
  echo
  echo "push / by hand (gzip -1): $(rate "$(median push)" "$(median hand)")"
  echo
  echo "| sustained, pgbench (2 clients TPC-B + 2 clients bulk inserts) for ${LOAD_S}s | value |"
  echo "|---|---|"
  echo "| bulk insert transactions/s (2,000 rows each) | $PGB |"
  echo "| WAL written | $WRITTEN segments ($(rate "$WRITTEN" "$LOAD_S") segments/s) |"
  echo "| archived during the load | $ARCH_AT_END ($(rate "$ARCH_AT_END" "$LOAD_S") segments/s) |"
  echo "| waiting (.ready) when the load stopped | $READY_AT_END |"
  echo "| drained after | ${DRAIN_S}s |"
  echo "| archived in all | $ARCH_TOTAL in ${ALL_S}s ($(rate "$ARCH_TOTAL" "$ALL_S") segments/s), $FAILED failures |"
} | tee "$OUT"
