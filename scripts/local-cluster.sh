#!/usr/bin/env bash
# A local PostgreSQL 15 cluster with TLS for hand use, under .opsctl-local/ (git-ignored).
#   scripts/local-cluster.sh start   # initdb (once), certificates, start
#   scripts/local-cluster.sh env     # prints: export OPSCTL_DATABASE_URL=...
#   scripts/local-cluster.sh stop    # stop the server
#   scripts/local-cluster.sh restart # restart (settings that need one, e.g. archive_mode)
#   scripts/local-cluster.sh destroy # stop and remove everything
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROOT="${OPSCTL_LOCAL_DIR:-$PWD/.opsctl-local}"
DATA="$ROOT/data"
PASSWORD_FILE="$ROOT/password"

url() {
  local port; port=$(cat "$ROOT/port")
  printf 'postgresql://postgres:%s@localhost:%s/opsctl?sslmode=verify-full&sslrootcert=%s' \
    "$(cat "$PASSWORD_FILE")" "$port" "$ROOT/ca.crt"
}

make_certs() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "/CN=opsctl local CA" -keyout "$ROOT/ca.key" -out "$ROOT/ca.crt" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout "$ROOT/server.key" -out "$ROOT/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$ROOT/server.ext"
  openssl x509 -req -days 825 -in "$ROOT/server.csr" -CA "$ROOT/ca.crt" -CAkey "$ROOT/ca.key" \
    -CAcreateserial -extfile "$ROOT/server.ext" -out "$ROOT/server.crt" 2>/dev/null
  chmod 600 "$ROOT/server.key" "$ROOT/ca.key"
}

# pg_ctl as the server's user, without the caller's OPSCTL_* variables: the server's
# archive_command (opsctl wal push) must read its key and repository from its policy, not
# from the environment of whoever started the server.
pg_ctl_clean() {
  local unset=() v
  for v in $(compgen -e | grep '^OPSCTL_' || true); do unset+=(-u "$v"); done
  as_pg env "${unset[@]}" "$PG_BINDIR/pg_ctl" "$@"
}

start() {
  mkdir -p "$ROOT"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    log "creating a TLS cluster in $ROOT"
    rm -rf "$DATA"
    mkdir -p "$ROOT/sock"
    make_certs
    head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$PASSWORD_FILE"
    chmod 600 "$PASSWORD_FILE"
    free_port > "$ROOT/port"
    [ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$ROOT"
    chmod 755 "$ROOT"
    as_pg "$PG_BINDIR/initdb" -D "$DATA" -U postgres --auth=scram-sha-256 -E UTF8 --locale=C \
      --pwfile="$PASSWORD_FILE" >/dev/null
    cat >> "$DATA/postgresql.conf" <<CONF
port = $(cat "$ROOT/port")
listen_addresses = '127.0.0.1'
unix_socket_directories = '$ROOT/sock'
ssl = on
ssl_cert_file = '$ROOT/server.crt'
ssl_key_file = '$ROOT/server.key'
shared_preload_libraries = 'pg_stat_statements'
timezone = 'UTC'
CONF
    cat > "$DATA/pg_hba.conf" <<HBA
local all all scram-sha-256
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl all all ::1/128 scram-sha-256
hostnossl all all all reject
HBA
    [ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$ROOT"
  fi
  # opsctl basebackup streams over a replication connection (same TLS): clusters made
  # before point-in-time recovery get the line too.
  grep -q '^hostssl replication' "$DATA/pg_hba.conf" || \
    sed -i '1i hostssl replication postgres 127.0.0.1/32 scram-sha-256' "$DATA/pg_hba.conf"
  if as_pg "$PG_BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "cluster already running on port $(cat "$ROOT/port")"
    as_pg "$PG_BINDIR/pg_ctl" -D "$DATA" reload >/dev/null
  else
    pg_ctl_clean -D "$DATA" -l "$ROOT/server.log" -w start >/dev/null
    log "cluster started on port $(cat "$ROOT/port")"
  fi
  PGPASSWORD="$(cat "$PASSWORD_FILE")" PGSSLMODE=verify-full PGSSLROOTCERT="$ROOT/ca.crt" \
    psql -X -q -h localhost -p "$(cat "$ROOT/port")" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='opsctl'" | grep -q 1 || \
  PGPASSWORD="$(cat "$PASSWORD_FILE")" PGSSLMODE=verify-full PGSSLROOTCERT="$ROOT/ca.crt" \
    psql -X -q -h localhost -p "$(cat "$ROOT/port")" -U postgres -d postgres -c "CREATE DATABASE opsctl" >/dev/null
}

stop() {
  if [ -f "$DATA/PG_VERSION" ]; then
    as_pg "$PG_BINDIR/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
    log "cluster stopped"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) pg_ctl_clean -D "$DATA" -l "$ROOT/server.log" -w restart -m fast >/dev/null; log "cluster restarted" ;;
  env) [ -f "$ROOT/port" ] || die "no local cluster: run scripts/local-cluster.sh start"; printf "export OPSCTL_DATABASE_URL='%s'\n" "$(url)" ;;
  destroy) stop; rm -rf "$ROOT"; log "removed $ROOT" ;;
  *) echo "usage: $0 start|stop|restart|env|destroy" >&2; exit 2 ;;
esac
