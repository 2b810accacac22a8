#!/usr/bin/env bash
# Restore benchmark: `opsctl restore` vs `pg_restore -d DB FILE` of an unencrypted
# custom-format dump (pg_dump's default compression) of the same database, alternating,
# each into a freshly created empty database, with wall time, CPU and peak RSS.
#   OPSCTL_DATABASE_URL=…/SOURCE_DB  PG* (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE)
#   SOURCE_DB=bench N=7 WORK=/tmp/opsctl-bench scripts/bench-restore.sh
# Medians of 7 runs on 500k trades (2 shared cores, load ≈ 2.7): opsctl 2.98 s,
# pg_restore 2.98 s (1.00×); peak RSS opsctl 19 MiB, pg_restore 12 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${OPSCTL_BIN:-target/release/opsctl}
W=${WORK:-/tmp/opsctl-bench}
SRC=${SOURCE_DB:-bench}
N=${N:-7}
PGB=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
mkdir -p "$W"
export OPSCTL_KEY_FILE=$W/backup.key
[ -f "$W/backup.key" ] || "$B" backup keygen --out "$W/backup.key"
if [ ! -f "$W/id" ]; then
  "$B" backup create --dir "$W/repo" --format json > "$W/create.json"
  python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$W/create.json" > "$W/id"
  "$PGB/pg_dump" -Fc -f "$W/plain.dump" "$SRC"
fi
ID=$(cat "$W/id")
echo "load: $(cat /proc/loadavg)"
for i in $(seq 1 "$N"); do
  for kind in opsctl pg_restore; do
    db=bench_restore_${kind}_$i
    psql -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    l=$(cut -d' ' -f1 /proc/loadavg)
    if [ $kind = opsctl ]; then
      /usr/bin/time -f "$kind run=$i wall=%e user=%U sys=%S rss_kb=%M load1=$l" \
        "$B" restore "$ID" --dir "$W/repo" --target-db "$db" >/dev/null
    else
      /usr/bin/time -f "$kind run=$i wall=%e user=%U sys=%S rss_kb=%M load1=$l" \
        "$PGB/pg_restore" -d "$db" "$W/plain.dump"
    fi
    psql -d postgres -qc "DROP DATABASE $db"
  done
done
echo "load: $(cat /proc/loadavg)"
