#!/usr/bin/env bash
# Point-in-time recovery bench (issue 17; `scripts/bench.sh --only pitr` runs it): a
# throwaway TLS cluster archiving with opsctl (`opsctl wal setup --print`, restart:
# archive_command = opsctl wal push, archive_timeout = 60s), N trades of the audit data
# set loaded through the shipped schema (as bench.sh does), then in this order:
#
#  c. `opsctl basebackup` against `pg_basebackup -Ft -D - -X none --checkpoint=fast |
#     gzip -1 | openssl enc -aes-256-cbc -pbkdf2 > file` (+ sync), alternated round by
#     round, the order flipped each round; wall, CPU, peak RSS, size.
#  a. RPO: a writer (pgbench, one client, BENCH_RPO_RATE inserts/s, each its own
#     transaction, ids from a sequence, commit time in the row) runs BENCH_RPO_SECONDS and
#     on until the worst moment for archive_timeout (the newest archived segment is
#     archive_timeout − 3 s old: the timed switch is due); the writer is stopped and at
#     once the server with `pg_ctl -m immediate`, its data directory deleted, and `opsctl
#     restore --pitr --latest --start` recovers a new one in its place; the ids missing
#     give the writes lost, and the gap between the last acknowledged and the last
#     recovered commit time the seconds lost.
#  b. RTO, on the recovered (promoted) cluster: a fresh base backup and a logical backup
#     of the same data (nothing written between), then alternated rounds of `opsctl restore
#     --pitr --latest --start` into a new data directory (authenticate + unpack + replay +
#     promotion; the server is then stopped and removed) against `opsctl restore` of the
#     logical backup into a fresh database (the source's archiving off from there on, so
#     the logical restores' WAL is not replayed by the next physical round).
#
#   scripts/bench-pitr.sh [--trades N] [--reps R] [--rpo-seconds S] [--opsctl PATH] [--out FILE]
#   (or BENCH_TRADES, BENCH_REPS, BENCH_RPO_SECONDS, BENCH_RPO_RATE, BENCH_OPSCTL,
#   BENCH_PITR_OUT; defaults 100,000 trades, 3 rounds, 180 s, 20 inserts/s,
#   benches/results/pitr-latest.md)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TRADES="${BENCH_TRADES:-100000}"
REPS="${BENCH_REPS:-3}"
RPO_SECONDS="${BENCH_RPO_SECONDS:-180}"
RPO_RATE="${BENCH_RPO_RATE:-20}"
OPSCTL="${BENCH_OPSCTL:-}"
OUT="${BENCH_PITR_OUT:-benches/results/pitr-latest.md}"
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --trades|--rows) TRADES="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --rpo-seconds) RPO_SECONDS="$2"; shift 2 ;;
    --opsctl) OPSCTL="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) die "unknown argument $1 (use --trades N --reps R --rpo-seconds S --opsctl PATH --out FILE)" ;;
  esac
done
install_deps
OPSCTL="$(bench_opsctl "$OPSCTL")"
BIN="$PG_BINDIR"

WORK="$(mktemp -d /tmp/opsctl-bench-pitr.XXXXXX)"
chmod 755 "$WORK"
RESTORED=()
stop_pg() { [ ! -f "$1/postmaster.pid" ] || as_pg "$BIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true; }
cleanup() {
  local d
  for d in "${RESTORED[@]}"; do stop_pg "$d"; done
  bench_cleanup "$WORK"
}
trap cleanup EXIT
bench_cluster "$WORK"
DATA="$OPSCTL_LOCAL_DIR/data"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
LOAD_START="$(uptime)"

# The repository, key and policy: the server's OS user (postgres) runs `wal push`.
P="$WORK/pitr"
POLICY="$P/policy.toml"
mkdir -p "$P/repo"
"$OPSCTL" backup keygen --out "$P/key" >/dev/null
cat > "$POLICY" <<TOML
[backup]
dir = "$P/repo"
key_file = "$P/key"

[basebackup]
keep_last = 100
archive_wait = "5 minutes"
TOML
own_repo() { [ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$P"; }
own_repo
chmod 700 "$P"
log "archiving on: opsctl wal setup --print | psql, restart"
"$OPSCTL" wal setup --print --policy "$POLICY" | psql -X -q -v ON_ERROR_STOP=1 -d postgres >/dev/null
scripts/local-cluster.sh restart >/dev/null 2>&1
[ "$(q postgres 'SHOW archive_mode')" = on ] || die "archive_mode is not on after the restart"
ARCHIVE_TIMEOUT=$(q postgres "SHOW archive_timeout")

log "loading $TRADES trades, audit trigger on (the audit data set of bench.sh)"
make_trading_db bench_pitr "$TRADES" on
# The RPO writer's table exists before the base backups (so a loss is rows, not the table).
q postgres "CREATE DATABASE rpo" >/dev/null
q rpo "CREATE TABLE rpo_writes (id bigserial PRIMARY KEY, t timestamptz NOT NULL DEFAULT clock_timestamp())" >/dev/null
DB_SIZE=$(q postgres "SELECT pg_size_pretty(pg_database_size('bench_pitr'))")
CLUSTER_SIZE=$(q postgres "SELECT pg_size_pretty(sum(pg_database_size(oid))) FROM pg_database")
export OPSCTL_DATABASE_URL
OPSCTL_DATABASE_URL="$(url_for bench_pitr)"
openssl rand -hex 32 > "$WORK/openssl.pass"
newest_base() { find "$P/repo/base" -name 'base.tar.opsbak' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-; }

# ---------------------------------------------------------------- c. basebackup vs by hand
bb_opsctl() { measure pitr:basebackup "$OPSCTL" basebackup --policy "$POLICY"; own_repo; }
bb_hand() {
  measure pitr:hand sh -c "'$BIN/pg_basebackup' -Ft -D - -X none --checkpoint=fast | gzip -1 \
    | openssl enc -aes-256-cbc -pbkdf2 -pass file:'$WORK/openssl.pass' > '$WORK/hand-base.enc' && sync '$WORK/hand-base.enc'"
}
for i in $(seq "$REPS"); do
  if [ $(( i % 2 )) -eq 1 ]; then log "basebackup, round $i of $REPS: opsctl · hand"; bb_opsctl; bb_hand
  else log "basebackup, round $i of $REPS: hand · opsctl"; bb_hand; bb_opsctl; fi
done
BB_SIZE=$(stat -c %s "$(newest_base)")
HAND_SIZE=$(stat -c %s "$WORK/hand-base.enc")

# ---------------------------------------------------------------- a. RPO
log "RPO: a writer for ${RPO_SECONDS}s at $RPO_RATE inserts/s (on to the worst moment), then pg_ctl -m immediate, data directory deleted, restore --pitr --latest --start"
echo 'INSERT INTO rpo_writes DEFAULT VALUES;' > "$WORK/writer.sql"
RPO_LOAD=$(cut -d' ' -f1 /proc/loadavg)
WRITER_START=$(q rpo "SELECT clock_timestamp()")
"$BIN/pgbench" -n -c 1 -R "$RPO_RATE" -T $(( RPO_SECONDS + 600 )) -f "$WORK/writer.sql" -d rpo > "$WORK/writer.out" 2>&1 &
WRITER=$!
sleep "$RPO_SECONDS"
# The crash comes at the worst moment for archive_timeout: just before it would switch
# the segment the writer is filling, i.e. when the newest archived segment is
# archive_timeout − 3 s old (a crash at a random moment loses half that on average).
TIMEOUT_S=$(q postgres "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'")
until [ "$(q postgres "SELECT extract(epoch FROM now() - last_archived_time) >= $TIMEOUT_S - 3 FROM pg_stat_archiver")" = t ]; do
  sleep 0.2
done
kill "$WRITER" 2>/dev/null || true
wait "$WRITER" 2>/dev/null || true
# The last acknowledged write, the archiver's state, then the crash.
ARCHIVE_AGE=$(q postgres "SELECT round(extract(epoch FROM now() - last_archived_time)::numeric, 1) FROM pg_stat_archiver")
ACKED=$(q rpo "SELECT max(id) FROM rpo_writes")
ACKED_T=$(q rpo "SELECT max(t) FROM rpo_writes")
ARCHIVER=$(q postgres "SELECT coalesce(last_archived_wal, '-') || ' at ' || coalesce(to_char(last_archived_time AT TIME ZONE 'UTC', 'HH24:MI:SS'), '-') || ', ' || archived_count || ' archived, ' || failed_count || ' failed' FROM pg_stat_archiver")
CURRENT_WAL=$(q postgres "SELECT pg_walfile_name(pg_current_wal_lsn())")
as_pg "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null
CRASH_AT=$(date -u +%H:%M:%S)
rm -rf "$DATA"
measure pitr:rpo_restore "$OPSCTL" restore --pitr --policy "$POLICY" --pgdata "$DATA" --latest --start
cp "$WORK/last.out" "$WORK/rpo-restore.txt"
# The recovery's log lives in the data directory: out of it, so the RTO base backups do not
# carry it (restore --start of builds before 915cc11+1 read such a copied log as its own).
mv "$DATA/opsctl-recovery.log" "$WORK/rpo-recovery.log"
own_repo
GOT=$(q rpo "SELECT coalesce(max(id), 0) FROM rpo_writes")
GOT_COUNT=$(q rpo "SELECT count(*) FROM rpo_writes")
GOT_T=$(q rpo "SELECT coalesce(max(t)::text, 'none') FROM rpo_writes")
MISSING=$(( ACKED - GOT ))
LOST_S=$(q rpo "SELECT round(extract(epoch FROM timestamptz '$ACKED_T' - coalesce(max(t), timestamptz '$WRITER_START'))::numeric, 1) FROM rpo_writes")
LOST_BY_RATE=$(awk -v m="$MISSING" -v r="$RPO_RATE" 'BEGIN {printf "%.1f", m/r}')
[ "$(q bench_pitr 'SELECT count(*) FROM trades')" = "$TRADES" ] || die "the recovered cluster lacks trades"

# ---------------------------------------------------------------- b. RTO
log "RTO: a base backup and a logical backup of the same data, then physical vs logical restores"
"$OPSCTL" basebackup --policy "$POLICY" >/dev/null
own_repo
"$OPSCTL" backup create --policy "$POLICY" > "$WORK/logical.out"
LOGICAL=$(awk 'NR==1 {print $7}' "$WORK/logical.out")
[ -f "$LOGICAL" ] || die "cannot find the logical backup ($LOGICAL)"
LOGICAL_SIZE=$(stat -c %s "$LOGICAL")
RTO_BASE_SIZE=$(stat -c %s "$(newest_base)")
RTO_CLUSTER_SIZE=$(q postgres "SELECT pg_size_pretty(sum(pg_database_size(oid))) FROM pg_database")
# From here the source's WAL is not archived (archive_command = 'true'): the logical
# restores write into this cluster, and their WAL in the archive would be replayed by the
# next physical restore (--latest), making each physical round slower than the last.
# The physical restores need only the WAL up to the base backup's end, archived above.
q postgres "ALTER SYSTEM SET archive_command = 'true'" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
# A promoted restore archives its new timeline into the same repository (it keeps the
# source's archive_command): what it archived is removed after each round, so every
# round restores the same base backup and WAL (no timelines of earlier rounds to follow).
rto_physical() {
  local d="$WORK/rto-$1" port; port=$(free_port)
  RESTORED+=("$d")
  (cd "$P/repo" && find wal -type f | sort) > "$WORK/wal-before"
  measure pitr:rto_physical "$OPSCTL" restore --pitr --policy "$POLICY" --pgdata "$d" --latest --start --port "$port"
  [ "$(PGPORT=$port q bench_pitr 'SELECT count(*) FROM trades')" = "$TRADES" ] || die "physical restore: trades missing"
  stop_pg "$d"; rm -rf "$d"
  (cd "$P/repo" && find wal -type f | sort | comm -13 "$WORK/wal-before" - | xargs -r rm -f)
  own_repo
}
rto_logical() {
  fresh_db r_pitr
  measure pitr:rto_logical "$OPSCTL" restore "$LOGICAL" --policy "$POLICY" --target-db r_pitr
  [ "$(q r_pitr 'SELECT count(*) FROM trades')" = "$TRADES" ] || die "logical restore: trades missing"
}
for i in $(seq "$REPS"); do
  if [ $(( i % 2 )) -eq 1 ]; then log "RTO, round $i of $REPS: physical · logical"; rto_physical "$i"; rto_logical
  else log "RTO, round $i of $REPS: logical · physical"; rto_logical; rto_physical "$i"; fi
done
q postgres "DROP DATABASE r_pitr" >/dev/null

# ---------------------------------------------------------------- report
mkdir -p "$(dirname "$OUT")"
LOAD_END="$(uptime)"
M() { median "$1"; }
R() { mib "$(maxcol "$1")"; }
OWN() { median "$1" 6; }
CPU() { median "$1" 4; }
LOAD() { median "$1" 5; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k/1024}'; }
mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b/1e6}'; }
verdict() {
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "n/a" || v == "") print "n/a";
    else if ((op == "lt" && v+0 < t+0) || (op == "le" && v+0 <= t+0)) print "met";
    else print "**MISSED**" }'
}
BBR=$(ratio "$(M pitr:basebackup)" "$(M pitr:hand)")
RTOR=$(ratio "$(M pitr:rto_physical)" "$(M pitr:rto_logical)")
{
  echo "## Point-in-time recovery: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $("$BIN/postgres" --version), opsctl $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo "Command: \`$(env | grep -E '^BENCH_' | sort | tr '\n' ' ')scripts/bench-pitr.sh $ARGS\` ($TRADES trades of the audit data set, $REPS rounds, alternated with the order flipped each round, medians)."
  echo "Cluster: TLS, fsync on, archive_command = opsctl wal push (local directory repository), archive_timeout = $ARCHIVE_TIMEOUT; database bench_pitr $DB_SIZE, cluster $CLUSTER_SIZE."
  echo "Load at start: \`${LOAD_START#*load average: }\`; at end: \`${LOAD_END#*load average: }\` (1, 5, 15 min; the machine may be shared)."
  echo
  echo "### Base backup"
  echo
  echo "| base backup of the cluster | wall s | × hand | CPU s, all / own | peak RSS, own / largest | file | load |"
  echo "|---|---|---|---|---|---|---|"
  echo "| \`opsctl basebackup\` (pg_basebackup tar → zstd 3 → AES-256-GCM, fsync, waits for its WAL in the archive) | $(M pitr:basebackup) | $BBR | $(CPU pitr:basebackup) / $(OWN pitr:basebackup) | $(R pitr:basebackup) / $(mib "$(maxcol pitr:basebackup 7)") | $(mb "$BB_SIZE") | $(LOAD pitr:basebackup) |"
  echo "| \`pg_basebackup -Ft -D - -X none --checkpoint=fast \\| gzip -1 \\| openssl enc -aes-256-cbc -pbkdf2 > file && sync file\` | $(M pitr:hand) | 1.00 | $(CPU pitr:hand) / – | – / $(mib "$(maxcol pitr:hand 7)") | $(mb "$HAND_SIZE") | $(LOAD pitr:hand) |"
  echo
  echo "### RPO after a crash"
  echo
  echo "| RPO run | value |"
  echo "|---|---|"
  echo "| writer | pgbench, 1 client, $RPO_RATE inserts/s for ${RPO_SECONDS}s and on until the crash (load $RPO_LOAD at its start): $ACKED acknowledged, the last committed at $ACKED_T |"
  echo "| archiver before the crash | last $ARCHIVER, ${ARCHIVE_AGE}s before the crash (the worst moment: archive_timeout would switch 3 s later); the server was writing $CURRENT_WAL |"
  echo "| crash | \`pg_ctl -m immediate\` at $CRASH_AT UTC, data directory deleted |"
  echo "| \`opsctl restore --pitr --latest --start\` | $(M pitr:rpo_restore) s (peak RSS $(R pitr:rpo_restore)) |"
  echo "| recovered | $GOT_COUNT rows, the last id $GOT committed at $GOT_T (writer started at $WRITER_START) |"
  echo "| writes lost | **$MISSING** ids = **$LOST_S s** of writes (commit time of the last acknowledged − last recovered; $LOST_BY_RATE s at $RPO_RATE/s) |"
  echo
  echo "### RTO: physical vs logical restore of the same data"
  echo
  echo "Base backup $(mb "$RTO_BASE_SIZE") of the whole cluster ($RTO_CLUSTER_SIZE: bench_pitr plus the small rpo, postgres and opsctl databases) against the logical backup $(mb "$LOGICAL_SIZE") of bench_pitr ($DB_SIZE); both taken one after the other with nothing written between."
  echo
  echo "| restore | wall s | CPU s (own) | peak RSS (own) | load |"
  echo "|---|---|---|---|---|"
  echo "| \`opsctl restore --pitr --latest --start\` (authenticate, unpack, replay, promote) into a new data directory | $(M pitr:rto_physical) | $(OWN pitr:rto_physical) | $(R pitr:rto_physical) | $(LOAD pitr:rto_physical) |"
  echo "| \`opsctl restore ID --target-db\` of the logical backup into a fresh database | $(M pitr:rto_logical) | $(OWN pitr:rto_logical) | $(R pitr:rto_logical) | $(LOAD pitr:rto_logical) |"
  echo
  echo "| target (issue 17) | measured | verdict |"
  echo "|---|---|---|"
  echo "| writes lost after a crash ≤ 60 s (archive_timeout $ARCHIVE_TIMEOUT) | $LOST_S s ($MISSING ids) | $(verdict "$LOST_S" le 60) |"
  echo "| RTO physical ≤ 0.5× logical | $RTOR | $(verdict "$RTOR" le 0.5) |"
  echo "| basebackup ≤ 1.0× by hand | $BBR | $(verdict "$BBR" le 1.0) |"
  echo
  echo "<details><summary>Raw runs: name, wall s, peak RSS KiB (own process), CPU s (all processes), 1-min load at start, CPU s (own process), peak RSS KiB (largest process)</summary>"
  echo
  echo '```'
  cat "$RESULTS"
  echo '```'
  echo
  echo "The RPO restore's output:"
  echo
  echo '```'
  cat "$WORK/rpo-restore.txt"
  echo '```'
  echo "</details>"
} | tee "$OUT"
