#!/usr/bin/env bash
# A throw-away local PostgreSQL for development and tests.
#   bash runners/postgres.sh start   # prints the SQLAlchemy URL
#   bash runners/postgres.sh url
#   bash runners/postgres.sh stop    # stops it and deletes its data
# Port and directory: $EFFVIT_PG_PORT (5433), $EFFVIT_PG_DIR (/tmp/effvit-pg-PORT).
# Installs Debian's postgresql package when the binaries are missing and we are root.
set -euo pipefail
PORT=${EFFVIT_PG_PORT:-5433}
DIR=${EFFVIT_PG_DIR:-/tmp/effvit-pg-$PORT}
URL="postgresql+psycopg://effvit@127.0.0.1:$PORT/effvit"

find_bin() {
  local b
  b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$b" ] && command -v pg_ctl >/dev/null 2>&1; then b=$(dirname "$(command -v pg_ctl)"); fi
  echo "$b"
}

as_pg() {
  # initdb and the server refuse to run as root; use the package's postgres user then.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

BIN=$(find_bin)
case "${1:-}" in
  start)
    if [ -z "$BIN" ]; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing postgresql (apt)..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 \
          || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
        BIN=$(find_bin)
      fi
      [ -n "$BIN" ] || { echo "error: PostgreSQL binaries not found (install the postgresql package)" >&2; exit 2; }
    fi
    if [ -f "$DIR/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
      echo "$URL"; exit 0
    fi
    rm -rf "$DIR"; mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    as_pg "$BIN/initdb" -D "$DIR/data" -U effvit --auth=trust -E UTF8 >"$DIR/initdb.log" 2>&1
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
      -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U effvit effvit
    echo "$URL"
    ;;
  stop)
    if [ -n "$BIN" ] && [ -d "$DIR/data" ]; then as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true; fi
    rm -rf "$DIR"
    ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
