#!/usr/bin/env bash
# Shared helpers for opsctl's scripts: installing what is missing, and running
# PostgreSQL as the postgres OS user when we are root.

set -euo pipefail

PG_BINDIR="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The opsctl a benchmark measures, as an absolute path: $1 when given, else a release
# build of this checkout (built now).
bench_opsctl() {
  local p="${1:-}"
  if [ -z "$p" ]; then
    log "building opsctl (release)"
    cargo build --release --locked --quiet || return 1
    p="$PWD/target/release/opsctl"
  fi
  [ -x "$p" ] || { printf 'error: no opsctl binary at %s\n' "$p" >&2; return 1; }
  echo "$(cd "$(dirname "$p")" && pwd)/$(basename "$p")"
}

# Installs (with apt-get) whatever of the toolchain and PostgreSQL 15 is missing.
install_deps() {
  local missing=()
  [ -x "$PG_BINDIR/initdb" ] || missing+=(postgresql-15)
  [ -e /usr/share/postgresql/15/extension/pg_stat_statements.control ] || missing+=(postgresql-contrib)
  command -v psql >/dev/null || missing+=(postgresql-client)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v cc >/dev/null || missing+=(build-essential)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
  command -v runuser >/dev/null || missing+=(util-linux)
  [ -x /usr/bin/time ] || missing+=(time)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts a default cluster on install; opsctl does not need it.
    $sudo pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
  fi
  command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
  # The loopback S3 server of the S3 repository tests (crate s3s-fs; checks signatures).
  if ! command -v s3s-fs >/dev/null && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
    log "installing the S3 test server s3s-fs"
    cargo install --locked s3s-fs --version 0.14.1 --features binary
  fi
}

# Runs a PostgreSQL server binary, as the postgres user when we are root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $(( 20000 + RANDOM % 20000 ))
}

# ---- benchmarks: a throwaway cluster and measured runs (bench.sh, bench-import.sh) ----

# Starts a throwaway TLS cluster under $1/cluster (removed by `bench_cleanup`) and exports
# what psql, pg_dump and opsctl need to reach it: OPSCTL_DATABASE_URL, BASE_URL, PG*.
bench_cluster() {
  export OPSCTL_LOCAL_DIR="$1/cluster"
  scripts/local-cluster.sh start >/dev/null 2>&1
  eval "$(scripts/local-cluster.sh env)"
  export OPSCTL_DATABASE_URL
  BASE_URL="$OPSCTL_DATABASE_URL"
  export PGOPTIONS="-c client_min_messages=warning"
  export PGHOST=localhost PGPORT PGUSER=postgres PGSSLMODE=verify-full
  PGPORT=$(cat "$OPSCTL_LOCAL_DIR/port")
  export PGSSLROOTCERT="$OPSCTL_LOCAL_DIR/ca.crt" PGPASSWORD
  PGPASSWORD="$(cat "$OPSCTL_LOCAL_DIR/password")"
}

# Stops and removes the throwaway cluster and the work directory $1.
bench_cleanup() { scripts/local-cluster.sh destroy >/dev/null 2>&1 || true; rm -rf "$1"; }

# The connection URL of database $1 on the throwaway cluster.
url_for() { echo "$BASE_URL" | sed -E "s#/opsctl\?#/$1?#"; }

# q DB SQL: one query, unaligned tuples only, stop on error.
q() { psql -X -q -tA -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

# median NAME [COLUMN]: the median of COLUMN (default 2, seconds) over the rows of $RESULTS
# (tab-separated, name first) called NAME; "n/a" when there is none.
median() {
  awk -F'\t' -v n="$1" -v c="${2:-2}" '$1==n {print $c}' "$RESULTS" | sort -g \
    | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

# maxcol NAME [COLUMN]: the largest COLUMN (default 3, peak RSS KiB) of the NAME rows.
maxcol() { awk -F'\t' -v n="$1" -v c="${2:-3}" '$1==n {if ($c>m) m=$c} END {print m+0}' "$RESULTS"; }

# ratio A B: A/B with two decimals, "n/a" when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }

# ---- benchmarks shared by bench.sh and bench-pitr.sh: measured runs and the trading data ----
# (they use $WORK, $RESULTS, $OPSCTL and the throwaway cluster of `bench_cluster`)

# measure NAME CMD...: one run of CMD (stdout in $WORK/last.out). Appends to $RESULTS:
# name, wall s, peak RSS KiB of CMD's own process (VmHWM, polled every 50 ms: opsctl's
# own memory, not pg_dump's), CPU s of the whole tree (user+sys, children included),
# 1-minute load average at the start, CPU s of CMD's own process, peak RSS KiB of the
# largest process of the tree (/usr/bin/time).
measure() {
  local name="$1"; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local t0 t1; t0=$(date +%s%N)
  /usr/bin/time -f "%U %S %M" -o "$WORK/time.txt" "$@" >"$WORK/last.out" 2>"$WORK/last.err" &
  local tp=$! cp="" hwm=0 ticks=0 k v _ st
  while kill -0 "$tp" 2>/dev/null; do
    [ -n "$cp" ] || cp=$(pgrep -P "$tp" 2>/dev/null | head -1) || true
    if [ -n "$cp" ]; then
      while read -r k v _; do
        if [ "$k" = VmHWM: ] && [ "$v" -gt "$hwm" ]; then hwm=$v; fi
      done < "/proc/$cp/status" 2>/dev/null || true
      if { read -r st < "/proc/$cp/stat"; } 2>/dev/null; then
        st=${st##*) }; read -r -a st <<< "$st"
        [ $(( st[11] + st[12] )) -lt "$ticks" ] || ticks=$(( st[11] + st[12] ))
      fi
    fi
    sleep 0.05
  done
  wait "$tp" || { cat "$WORK/last.err" >&2; die "$name failed"; }
  t1=$(date +%s%N)
  local u s m; read -r u s m < "$WORK/time.txt"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", (b-a)/1e9}')" "$hwm" \
    "$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u+s}')" "$load" \
    "$(awk -v t="$ticks" -v h="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t/h}')" "$m" >> "$RESULTS"
}
fresh_db() { q postgres "DROP DATABASE IF EXISTS $1" >/dev/null; q postgres "CREATE DATABASE $1" >/dev/null; }

# make_trading_db NAME ROWS AUDIT(on|off): the schema by `opsctl migrate up`, 1,000
# users, ROWS trades over 24 months inserted in transactions of 100,000 (with the audit
# trigger on, each trade's insert is recorded in audit.logged_actions, as when the
# application writes it), then the monthly partitions by `opsctl partition ensure`.
make_trading_db() {
  local db="$1" rows="$2" audit="$3" from to
  fresh_db "$db"
  OPSCTL_DATABASE_URL="$(url_for "$db")" "$OPSCTL" migrate up >/dev/null
  {
    echo "SELECT setseed(0.42);"
    echo "INSERT INTO users (username, email) SELECT 'user' || g, 'user' || g || '@example.com' FROM generate_series(1, 1000) g;"
    [ "$audit" = on ] || echo "ALTER TABLE trades DISABLE TRIGGER USER;"
    for (( from = 1; from <= rows; from += 100000 )); do
      to=$(( from + 99999 < rows ? from + 99999 : rows ))
      cat <<SQL
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
FROM generate_series($from, $to) g;
SQL
    done
    [ "$audit" = on ] || echo "ALTER TABLE trades ENABLE TRIGGER USER;"
  } | psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null
  OPSCTL_DATABASE_URL="$(url_for "$db")" "$OPSCTL" partition ensure >/dev/null 2>&1
  q "$db" "VACUUM ANALYZE" >/dev/null
}
