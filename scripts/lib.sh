#!/usr/bin/env bash
# Shared helpers for opsctl's scripts: installing what is missing, and running
# PostgreSQL as the postgres OS user when we are root.

set -euo pipefail

PG_BINDIR="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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
