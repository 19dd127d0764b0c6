#!/usr/bin/env bash
# Fuzzes the datagram and inner-packet decoders with libFuzzer.
#
#   ./scripts/fuzz.sh [RUNS]        default 200000 inputs
#
# Builds the codec sources with -sanitize=fuzzer,address into
# .build-fuzz/, runs RUNS inputs starting from Tests/FuzzCorpus, and merges
# the inputs that found new coverage back into the corpus (commit them: the
# corpus runs in CI as a regression test, FuzzCorpusTests). A crash leaves
# its input in .build-fuzz/crash-* and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-200000}"
out=.build-fuzz
mkdir -p "$out/new"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name FuzzDecoders \
  Sources/ChatWire/JSON/*.swift Sources/ChatWire/Wire/*.swift Sources/ChatWire/Encoding/Hex.swift \
  Tests/ChatWireTests/FuzzChecks.swift Tests/Fuzz/FuzzEntry.swift -o "$out/fuzz-decoders"
"$out/fuzz-decoders" -runs="$runs" -max_len=9000 -artifact_prefix="$out/" -print_final_stats=1 \
  "$out/new" Tests/FuzzCorpus 2>&1 | tail -n 25
"$out/fuzz-decoders" -merge=1 Tests/FuzzCorpus "$out/new" 2>&1 | tail -n 2
echo "corpus: $(ls Tests/FuzzCorpus | wc -l) inputs"
