#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the programs, then runs
# the unit and end-to-end tests (which start the real programs on free
# loopback ports). Extra arguments go to `swift test`, e.g.
#   ./scripts/test.sh --filter ReplayWindowTests
#
# The store's tests and the main end-to-end tests run on SQLite and on
# PostgreSQL: unless UDPCHAT_TEST_POSTGRES already names a server
# (postgres://USER@HOST:PORT/DATABASE), a scratch cluster is made in a
# temporary directory, run by an unprivileged user on a free loopback port,
# and stopped and removed when the tests end.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh --test

cluster=""
stop_cluster() {
  [ -n "$cluster" ] || return 0
  as_owner "$pg_bin/pg_ctl" -D "$cluster/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$cluster"
}
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ -z "${UDPCHAT_TEST_POSTGRES:-}" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  cluster=$(mktemp -d /tmp/udpchat-pg-XXXXXX)
  trap stop_cluster EXIT
  [ "$(id -u)" = 0 ] && chown postgres "$cluster"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$pg_bin/initdb" -D "$cluster/data" -A trust -U udpchat_test >"$cluster/initdb.log" 2>&1 \
    || { cat "$cluster/initdb.log" >&2; exit 1; }
  as_owner "$pg_bin/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 60 \
    -o "-k $cluster -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$cluster/server.log" >&2; exit 1; }
  export UDPCHAT_TEST_POSTGRES="postgres://udpchat_test@127.0.0.1:$port/postgres?sslmode=disable"
fi

swift build --build-tests
swift test --skip-build "$@"
