#!/bin/sh
# Builds examples/go/main.go in GOPATH mode with Debian's golang packages
# (golang-go, golang-google-grpc-dev, golang-google-protobuf-dev, protoc-gen-go,
# protoc-gen-go-grpc, protobuf-compiler, libprotobuf-dev): stubs generated from
# proto/ into examples/go/gopath/ (git-ignored), the binary at
# examples/go/gopath/bin/backend.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
gopath="$here/gopath"
pkg="$gopath/src/switchboard"
rm -rf "$gopath/src" "$gopath/bin"   # keep $gopath/cache: warm builds take seconds
mkdir -p "$pkg/realtimev1" "$pkg/backend" "$gopath/bin"
# The proto has no go_package option (it is not Go-specific): map it here.
map="Mrealtime/v1/realtime.proto=switchboard/realtimev1"
protoc -I "$root/proto" -I /usr/include \
  --go_out="$pkg/realtimev1" --go_opt=paths=source_relative --go_opt="$map" \
  --go-grpc_out="$pkg/realtimev1" --go-grpc_opt=paths=source_relative --go-grpc_opt="$map" \
  "$root/proto/realtime/v1/realtime.proto"
mv "$pkg/realtimev1/realtime/v1/"*.go "$pkg/realtimev1/"
rm -rf "$pkg/realtimev1/realtime"
cp "$here/main.go" "$pkg/backend/main.go"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="${GOCACHE:-$gopath/cache}" \
  go build -o "$gopath/bin/backend" switchboard/backend
echo "built $gopath/bin/backend"
