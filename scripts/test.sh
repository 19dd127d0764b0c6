#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the programs, then runs
# the unit and end-to-end tests (which start the real programs on free
# loopback ports). Extra arguments go to `swift test`, e.g.
#   ./scripts/test.sh --filter ReplayWindowTests
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh --test
swift build --build-tests
swift test --skip-build "$@"
