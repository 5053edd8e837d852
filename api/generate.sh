#!/usr/bin/env bash
# Regenerates the Go code of api/inference from grpc_service.proto.
# The generated files are committed: building kiln never needs protoc.
#
# Needs protoc and the two Go plugins; to install them:
#   apt-get install -y protobuf-compiler
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
set -euo pipefail
cd "$(dirname "$0")/inference"
export PATH="$(go env GOPATH)/bin:$PATH"
protoc -I . \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  grpc_service.proto
