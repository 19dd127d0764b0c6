#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the programs (and their
# release build, which the latency tests measure), then runs the unit and
# end-to-end tests (which start the real programs on free loopback ports),
# the latency tests alone at the end. Extra arguments go to `swift test`, e.g.
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

# shellcheck source=lib/scratch-postgres.sh
. ./scripts/lib/scratch-postgres.sh
if [ -z "${UDPCHAT_TEST_POSTGRES:-}" ]; then
  trap stop_scratch_postgres EXIT
  start_scratch_postgres
fi

swift build --build-tests
# Tests of latency measure the optimised build, the one a release ships.
swift build -c release
export UDPCHAT_TIMING_BIN_DIR="$PWD/.build/release"
if [ "$#" -gt 0 ]; then
  swift test --skip-build "$@"
else
  # They also want the machine to themselves: run alone, after the rest.
  swift test --skip-build --skip HandshakeFloodTests
  swift test --skip-build --filter HandshakeFloodTests
fi
