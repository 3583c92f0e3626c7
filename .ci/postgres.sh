#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests and exports
# DG_TEST_POSTGRES_URL. Source it: `. .ci/postgres.sh`.
# Installs the server from Debian's packages when it is missing, runs it as
# an unprivileged user on a free local port, and stops it when the calling
# shell exits.

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

if ! PG_BIN=$(pg_bin); then
  echo "== installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  PG_BIN=$(pg_bin) || { echo "postgresql server binaries not found after install" >&2; return 1 2>/dev/null || exit 1; }
fi

PG_USER=postgres
id "$PG_USER" >/dev/null 2>&1 || useradd --system --create-home "$PG_USER"
PG_DIR=$(mktemp -d /tmp/dg-ci-pg.XXXXXX)
chown "$PG_USER" "$PG_DIR"
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

as_pg() { su "$PG_USER" -s /bin/sh -c "$*"; }

as_pg "'$PG_BIN/initdb' -D '$PG_DIR/data' -U dg --auth=trust -E UTF8 >'$PG_DIR/initdb.log' 2>&1" \
  || { cat "$PG_DIR/initdb.log" >&2; return 1 2>/dev/null || exit 1; }
as_pg "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -l '$PG_DIR/server.log' -w -t 60 \
  -o '-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off' start >/dev/null" \
  || { cat "$PG_DIR/server.log" >&2; return 1 2>/dev/null || exit 1; }

stop_pg() { as_pg "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -m fast stop >/dev/null 2>&1"; rm -rf "$PG_DIR"; }
trap stop_pg EXIT

"$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U dg -d postgres -qc "CREATE DATABASE dg_test" >/dev/null
export DG_TEST_POSTGRES_URL="postgres://dg:secret@127.0.0.1:$PG_PORT/dg_test"
echo "== postgres $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PG_PORT"
