#!/usr/bin/env bash
# Start a private PostgreSQL for the benchmarks in docs/BENCHMARKS.md ("PostgreSQL backend"), set up the
# way internal/testkit/pgtest sets up the tests' server: Debian's newest /usr/lib/postgresql/*/bin, initdb
# into DIR as nobody (PostgreSQL refuses root), SCRAM password login over TCP on 127.0.0.1:PORT only, the
# UNIX socket inside DIR, fsync ON; every other setting (shared_buffers, synchronous_commit, wal_*,
# max_connections, ...) at initdb's defaults. Creates database "popbridge" owned by superuser "popbridge".
# Optional NAME=VALUE arguments after the password are server settings for this start only (pg_ctl -o "-c
# NAME=VALUE"), e.g. the delivery settings of docs/OPERATIONS.md; without them, initdb's defaults.
#   docs/bench/pg-start.sh DIR PORT PASSWORD [NAME=VALUE ...]   # prints the DSN; stop: pg_ctl -D DIR/data stop (as nobody)
set -euo pipefail
DIR=$1 PORT=$2 PASS=$3
shift 3
OPTS=""
for kv in "$@"; do
  case $kv in
  *=*) OPTS="$OPTS -c $kv" ;;
  *) echo "pg-start.sh: setting $kv: want NAME=VALUE" >&2; exit 2 ;;
  esac
done
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
mkdir -p "$DIR/sock"
chown nobody:nogroup "$DIR" "$DIR/sock"
chmod 700 "$DIR"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
if [ ! -f "$DIR/data/PG_VERSION" ]; then
  (umask 077; printf '%s\n' "$PASS" > "$DIR/pwfile"); chown nobody:nogroup "$DIR/pwfile"
  as_nobody "$BIN/initdb" -D "$DIR/data" -U popbridge --pwfile="$DIR/pwfile" \
    --auth=scram-sha-256 --encoding=UTF8 --no-locale >"$DIR/initdb.log"
  rm -f "$DIR/pwfile"
  cat >>"$DIR/data/postgresql.conf" <<CONF
# added by docs/bench/pg-start.sh (as internal/testkit/pgtest)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR/sock'
fsync = on
CONF
fi
as_nobody "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" ${OPTS:+-o "$OPTS"} -w start >/dev/null
PGPASSWORD=$PASS "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U popbridge -d postgres -qAtc \
  "SELECT 1 FROM pg_database WHERE datname = 'popbridge'" | grep -q 1 ||
  PGPASSWORD=$PASS "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U popbridge -d postgres -qc "CREATE DATABASE popbridge"
echo "postgres://popbridge:$PASS@127.0.0.1:$PORT/popbridge?sslmode=disable"
