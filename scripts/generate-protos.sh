#!/usr/bin/env bash
# Regenerates Sources/IPCMessages/Generated/*.pb.swift from Protos/*.proto.
# Needs protoc (Debian: protobuf-compiler) and protoc-gen-swift built from
# apple/swift-protobuf at the version Package.swift names; the plugin is
# built once into .build-protoc/ (that takes a few minutes). Run it after
# changing a .proto file and commit the generated code with it.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v protoc >/dev/null || { echo "protoc is missing: apt-get install -y protobuf-compiler" >&2; exit 1; }

plugin="${PROTOC_GEN_SWIFT:-}"
if [ -z "$plugin" ]; then
  version=$(sed -n 's|.*swift-protobuf.git", from: "\([0-9.]*\)".*|\1|p' Package.swift)
  work=.build-protoc
  if [ ! -x "$work/swift-protobuf/.build/release/protoc-gen-swift" ]; then
    rm -rf "$work" && mkdir -p "$work"
    git clone --quiet --depth 1 --branch "$version" https://github.com/apple/swift-protobuf "$work/swift-protobuf"
    (cd "$work/swift-protobuf" && swift build -c release --product protoc-gen-swift)
  fi
  plugin="$work/swift-protobuf/.build/release/protoc-gen-swift"
fi

out=Sources/IPCMessages/Generated
mkdir -p "$out"
protoc --plugin=protoc-gen-swift="$plugin" --proto_path=Protos \
  --swift_opt=Visibility=Public --swift_out="$out" Protos/*.proto
echo "generated: $(ls "$out")"
