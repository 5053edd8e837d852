#!/usr/bin/env bash
# Runs kiln's whole test suite: installs what the tests need on a fresh Debian
# machine (the ONNX conformance suite), then vet, the tests with the race
# detector on the concurrent packages, and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: the ONNX conformance suite, and a C compiler
# for the cgo CUDA bindings (device/cuda opens the CUDA libraries at run time).
need=()
[ -d /usr/share/libonnx-testdata/data/node ] || need+=(libonnx-testdata)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 ./...

echo "== go test -race (concurrent packages)"
go test -count=1 -race ./engine ./engine/plan ./serve/... ./api/...

echo "== fuzz (short)"
# Go's fuzzer can report "context deadline exceeded" when -fuzztime ends while
# it is still minimizing a new input (a scheduling race under load, not a
# finding): such a run is repeated once. A real failure writes its input to
# testdata/fuzz and fails again.
fuzz() {
  local log
  log=$(mktemp)
  if go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-10s}" "$1" 2>&1 | tee "$log"; then
    rm -f "$log"
    return 0
  fi
  if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
    rm -f "$log"
    echo "== $2: the fuzzer's deadline race, once more"
    go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-10s}" "$1"
    return
  fi
  rm -f "$log"
  return 1
}
fuzz ./onnx FuzzDecodeModel
fuzz ./onnx FuzzDecodeTensor
fuzz . FuzzLoadModel
fuzz ./serve/repository FuzzParseConfig
fuzz ./serve/httpapi FuzzDecodeRequest
fuzz ./serve/httpapi FuzzDecodeStreamMessage
fuzz ./api FuzzDecodeRaw
fuzz ./engine/plan FuzzDecode
fuzz ./serve/httpapi FuzzHTTPHandler
fuzz ./serve/httpapi FuzzWebSocketStream
fuzz ./serve/grpcapi FuzzGRPCService
fuzz . FuzzPlanRun
fuzz . FuzzBuildRun
fuzz ./onnx FuzzExternalData
echo "== all tests passed"
