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
