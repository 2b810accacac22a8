#!/usr/bin/env bash
# Import benchmark: `opsctl import --table trades` against `psql \copy` of the same rows as
# CSV, alternated --reps times into fresh databases (schema by `opsctl migrate up`, users
# imported), with the audit trigger on and off (`ALTER TABLE trades DISABLE TRIGGER USER`,
# the schema of issue 3). Medians, rows/s, ratio, peak RSS; the load average beside them.
#
#   scripts/bench-import.sh [--trades N] [--reps R] [--opsctl PATH]... [--out FILE]
#
# --opsctl may be given more than once (e.g. a before and an after build); each is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TRADES=300000
REPS=3
BINS=()
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --trades) TRADES="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --opsctl) BINS+=("$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"); shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) die "unknown argument $1 (use --trades N --reps R --opsctl PATH --out FILE)" ;;
  esac
done
if [ ${#BINS[@]} -eq 0 ]; then
  log "building opsctl (release)"
  cargo build --release --locked --quiet
  BINS=("$PWD/target/release/opsctl")
fi

WORK="$(mktemp -d /tmp/opsctl-bench-import.XXXXXX)"
chmod 755 "$WORK"
trap 'bench_cleanup "$WORK"' EXIT
bench_cluster "$WORK"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
measure() {
  local name="$1"; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/last.out" 2>"$WORK/last.err" \
    || { cat "$WORK/last.err" >&2; die "$name failed"; }
  read -r secs rss < "$WORK/time.txt"
  printf '%s\t%s\t%s\t%s\n' "$name" "$secs" "$rss" "$(cut -d' ' -f1 /proc/loadavg)" >> "$RESULTS"
}

log "generating $TRADES trades"
python3 scripts/sample-data/generate.py "$WORK/data" --trades "$TRADES" >/dev/null
OPS="${BINS[0]}"
fresh() { # fresh DB TRIGGER(on|off)
  q postgres "DROP DATABASE IF EXISTS $1" >/dev/null
  q postgres "CREATE DATABASE $1 TEMPLATE tpl_$2" >/dev/null
}
for trig in on off; do
  q postgres "CREATE DATABASE tpl_$trig" >/dev/null
  OPSCTL_DATABASE_URL="$(url_for "tpl_$trig")" "$OPS" migrate up >/dev/null
  OPSCTL_DATABASE_URL="$(url_for "tpl_$trig")" "$OPS" import --table users "$WORK/data/users.json" >/dev/null
  [ "$trig" = on ] || q "tpl_$trig" "ALTER TABLE trades DISABLE TRIGGER USER" >/dev/null
done
COLS="id, user_id, symbol, side, quantity, entry_price, exit_price, entry_time, exit_time, realized_pnl, commission, model_id, created_at"
fresh scratch off
OPSCTL_DATABASE_URL="$(url_for scratch)" "$OPS" import --table trades "$WORK/data/trades.ndjson" >/dev/null
q scratch "COPY (SELECT $COLS FROM trades) TO STDOUT WITH (FORMAT csv)" > "$WORK/trades.csv"
ROWS=$(wc -l < "$WORK/trades.csv")
[ "$ROWS" = "$TRADES" ] || die "expected $TRADES rows in the CSV, got $ROWS"

for i in $(seq "$REPS"); do
  for trig in off on; do
    log "round $i, audit trigger $trig"
    for b in "${!BINS[@]}"; do
      fresh "imp_ops" "$trig"
      OPSCTL_DATABASE_URL="$(url_for imp_ops)" measure "opsctl$b-$trig" "${BINS[$b]}" import --table trades "$WORK/data/trades.ndjson"
      [ "$(q imp_ops 'SELECT count(*) FROM trades')" = "$TRADES" ] || die "opsctl$b imported a wrong row count"
    done
    fresh "imp_hand" "$trig"
    measure "copy-$trig" psql -X -q -d imp_hand -c "\\copy trades ($COLS) FROM '$WORK/trades.csv' WITH (FORMAT csv)"
  done
done

{
  echo "Import of $TRADES trades (generate.py), $REPS rounds alternated, medians; $(nproc) cores, load average at start of each run in results."
  echo
  echo "| run | trigger | median s | rows/s | vs psql \\copy | peak RSS KiB | load (median) |"
  echo "|---|---|---|---|---|---|---|"
  for trig in off on; do
    c=$(median "copy-$trig")
    for b in "${!BINS[@]}"; do
      m=$(median "opsctl$b-$trig")
      echo "| ${BINS[$b]} | $trig | $m | $(awk -v r="$TRADES" -v s="$m" 'BEGIN {printf "%d", r/s}') | $(awk -v a="$m" -v b="$c" 'BEGIN {printf "%.2f", a/b}') | $(maxcol "opsctl$b-$trig") | $(median "opsctl$b-$trig" 4) |"
    done
    echo "| psql \\copy CSV | $trig | $c | $(awk -v r="$TRADES" -v s="$c" 'BEGIN {printf "%d", r/s}') | 1.00 | $(maxcol "copy-$trig") | $(median "copy-$trig" 4) |"
  done
  echo
  echo "Raw runs (name, seconds, peak RSS KiB, 1-min load):"
  echo '```'
  cat "$RESULTS"
  echo '```'
} > "$WORK/report.md"
cat "$WORK/report.md"
[ -z "$OUT" ] || cp "$WORK/report.md" "$OUT"
