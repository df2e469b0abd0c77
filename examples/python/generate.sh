#!/bin/sh
# Generates the Python stubs of realtime.v1 (Realtime and Hooks) from proto/ into examples/python/gen
# (git-ignored), with Debian's protobuf-compiler and protobuf-compiler-grpc.
# The well-known types (google/protobuf/struct.proto) come from libprotobuf-dev.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rm -rf "$here/gen"
mkdir -p "$here/gen"
protoc -I "$root/proto" -I /usr/include \
  --python_out="$here/gen" \
  --grpc_python_out="$here/gen" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  "$root/proto/realtime/v1/realtime.proto" "$root/proto/realtime/v1/hooks.proto"
echo "generated $here/gen/realtime/v1/{realtime,hooks}_pb2.py and {realtime,hooks}_pb2_grpc.py"
