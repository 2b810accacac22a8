#!/usr/bin/env bash
# Compression benchmark (issue 16): `backup create` and `restore` with [backup]
# compression = zstd (level 3) vs gzip (level 3, the earlier fixed setting), alternated,
# on an audit-heavy database: ROWS trades inserted WITH the audit trigger on, so
# audit.logged_actions holds one JSON row image per trade, as in production.
#   scripts/bench-compression.sh [ROWS] [REPS]     (defaults 300000 and 3)
# Needs a release build (target/release/opsctl). Starts a throwaway TLS cluster in a
# temp dir, removed at the end. Prints one line per run and the medians (with an even
# REPS, the lower middle value). CPU = user+sys of opsctl and its waited pg_dump.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROWS=${1:-300000}
REPS=${2:-3}
OPSCTL="$PWD/${OPSCTL_BIN:-target/release/opsctl}"
WORK="$(mktemp -d /tmp/opsctl-bench-cmp.XXXXXX)"
chmod 755 "$WORK"
export OPSCTL_LOCAL_DIR="$WORK/cluster"
cleanup() { scripts/local-cluster.sh destroy >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
scripts/local-cluster.sh start >/dev/null 2>&1
eval "$(scripts/local-cluster.sh env)"
export OPSCTL_DATABASE_URL
PORT=$(cat "$OPSCTL_LOCAL_DIR/port")
export PGHOST=localhost PGPORT=$PORT PGUSER=postgres PGSSLMODE=verify-full
export PGSSLROOTCERT="$OPSCTL_LOCAL_DIR/ca.crt" PGPASSWORD="$(cat "$OPSCTL_LOCAL_DIR/password")"
export PGOPTIONS="-c client_min_messages=warning"
q() { psql -X -q -tA -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
DB=$(echo "$OPSCTL_DATABASE_URL" | sed -E 's#.*/([^/?]+)\?.*#\1#')

log "loading $ROWS trades with the audit trigger on into $DB"
"$OPSCTL" migrate up >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<SQL
SELECT setseed(0.42);
INSERT INTO users (username, email)
  SELECT 'user' || g, 'user' || g || '@example.com' FROM generate_series(1, 1000) g;
INSERT INTO trades (id, user_id, symbol, side, quantity, entry_price, exit_price, entry_time,
                    exit_time, realized_pnl, commission, model_id)
SELECT 't' || g, 1 + (g % 1000),
       (ARRAY['BTCUSDT','ETHUSDT','SOLUSDT','BNBUSDT','XRPUSDT','ADAUSDT'])[1 + g % 6],
       (ARRAY['long','short','buy','sell'])[1 + g % 4],
       round((random() * 10)::numeric, 8), round((random() * 60000)::numeric, 8),
       round((random() * 60000)::numeric, 8),
       timestamp '2025-01-01' + (g::float8 / $ROWS) * interval '12 months',
       timestamp '2025-01-01' + (g::float8 / $ROWS) * interval '12 months' + interval '2 hours',
       round((random() * 2000 - 1000)::numeric, 8), round((random() * 5)::numeric, 8),
       'model-' || (g % 7)
FROM generate_series(1, $ROWS) g;
SQL
"$OPSCTL" partition ensure >/dev/null 2>&1 || true
q "$DB" "VACUUM ANALYZE" >/dev/null
echo "audit rows: $(q "$DB" 'SELECT count(*) FROM audit.logged_actions'), database: $(q "$DB" "SELECT pg_size_pretty(pg_database_size('$DB'))")"
export OPSCTL_KEY_FILE="$WORK/backup.key"
"$OPSCTL" backup keygen --out "$OPSCTL_KEY_FILE" >/dev/null
printf '[backup]\ncompression = "zstd"\ncompression_level = 3\n' > "$WORK/zstd.toml"
printf '[backup]\ncompression = "gzip"\ncompression_level = 3\n' > "$WORK/gzip.toml"
RES="$WORK/res.tsv"; : > "$RES"
for i in $(seq 1 "$REPS"); do
  for c in zstd gzip; do
    l=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f "%e %M %U %S" -o "$WORK/t" env OPSCTL_POLICY="$WORK/$c.toml" \
      "$OPSCTL" backup create --dir "$WORK/repo-$c-$i" --format json > "$WORK/c.json"
    read -r cs crss cu csy < "$WORK/t"
    ccpu=$(awk -v a="$cu" -v b="$csy" 'BEGIN {printf "%.2f", a+b}')
    read -r file dump comp < <(python3 -c "import json,sys;j=json.load(open(sys.argv[1]));print(j['path'],j['dump_bytes'],j['file_bytes'])" "$WORK/c.json")
    q postgres "CREATE DATABASE r_${c}_$i" >/dev/null
    /usr/bin/time -f "%e %M %U %S" -o "$WORK/t" "$OPSCTL" restore "$file" --target-db "r_${c}_$i" >/dev/null
    read -r rs rrss ru rsy < "$WORK/t"
    rcpu=$(awk -v a="$ru" -v b="$rsy" 'BEGIN {printf "%.2f", a+b}')
    q postgres "DROP DATABASE r_${c}_$i" >/dev/null
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$cs" "$comp" "$dump" "$rs" "$crss" "$rrss" "$ccpu" "$rcpu" >> "$RES"
    echo "$c run=$i create=${cs}s (cpu ${ccpu}s incl. pg_dump) file=${comp}B dump=${dump}B restore=${rs}s (opsctl cpu ${rcpu}s) rss_create=${crss}KiB rss_restore=${rrss}KiB load1=$l"
  done
done
for c in zstd gzip; do
  med() { awk -F'\t' -v c="$c" -v k="$1" '$1==c {print $k}' "$RES" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  echo "median $c: create $(med 2) s (cpu $(med 8) s), file $(med 3) B (dump $(med 4) B), restore $(med 5) s (opsctl cpu $(med 9) s)"
done
