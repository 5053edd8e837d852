#!/usr/bin/env bash
# Runs kiln's whole test suite: installs what the tests need on a fresh Debian
# machine (the ONNX conformance suite), then vet, the tests with the race
# detector on the concurrent packages, and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: the ONNX conformance suite; a C compiler,
# which the CUDA tests use to build their fake CUDA libraries (testdata/*.c;
# kiln itself needs no cgo); NVRTC (CUDA 11.8's, from Debian's non-free
# component), so that the kernel-compile tests run without a GPU; and, on
# x86-64, qemu-user with the arm64 C library, to run the linux/arm64 build.
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need=()
[ -d /usr/share/libonnx-testdata/data/node ] || need+=(libonnx-testdata)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
/sbin/ldconfig -p | grep 'libnvrtc\.so\.' >/dev/null || need+=(libnvrtc11.2)
if [ "$(uname -m)" = x86_64 ]; then
  command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
  [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
fi
# libnvrtc11.2 is in the non-free component: add it to the Debian sources
# (deb822 or one-line format) where it is missing.
enable_nonfree() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [ -f "$f" ]; then
    $sudo sed -i -E '/^Components:/{/ non-free( |$)/!s/$/ non-free/}' "$f"
  elif [ -f /etc/apt/sources.list ]; then
    $sudo sed -i -E '/^deb .*debian/{/ non-free( |$)/!s/$/ non-free/}' /etc/apt/sources.list
  fi
}
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  [[ " ${need[*]} " == *" libnvrtc11.2 "* ]] && enable_nonfree
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

# promtool (Debian's prometheus package) for the chart's alert-rule tests.
bash scripts/deps-deploy.sh

# etcd and kube-apiserver for the chart's server-side dry run (TestKubeDryRun,
# at the end): kube-apiserver is built from k8s.io/kubernetes through the Go
# module proxy, about 17 minutes of compiling on 2 cores, so it builds in the
# background at the lowest priority while the tests below run (nothing when
# it is installed already).
kubelog=$(mktemp)
nice -n 19 bash scripts/deps-kube.sh >"$kubelog" 2>&1 &
kubepid=$!

echo "== go vet"
go vet ./...

bin=$(mktemp -d)
trap 'rm -rf "$bin"; kill "$kubepid" 2>/dev/null || true' EXIT

# failures LOG prints, last (where a short view of the output ends), the
# first lines of each panic, fatal error or failed test in LOG: a crash's
# goroutine dump is longer than any tail, and its cause is at its top.
failures() {
  echo "== where the tests failed (first lines of each panic, fatal error or failed test)"
  grep -n -m 20 -B 3 -A 25 -E '^(panic:|fatal error:|SIGSEGV|SIGBUS|unexpected signal)|^\s*--- FAIL|^FAIL' "$1" |
    grep -v -E '^[0-9]+-\s+(/|runtime\.)' | head -n 300
}

echo "== go test"
if ! go test -count=1 -timeout 25m ./... 2>&1 | tee "$bin/test.log"; then
  failures "$bin/test.log"
  exit 1
fi

echo "== go build without cgo (linux/amd64) and for linux/arm64"
CGO_ENABLED=0 go build -o "$bin/kiln" ./cmd/kiln
GOARCH=arm64 CGO_ENABLED=0 go build -o "$bin/kiln-arm64" ./cmd/kiln

echo "== CUDA tests without cgo (fake libraries, NVRTC): none may skip for a missing tool"
# Only the tests that need a real GPU (or a variable such as KILN_GPU_BENCH)
# may skip here.
# On a failure: the log's tail, then the first lines of each failure.
CGO_ENABLED=0 go test -count=1 -v ./device/cuda/... >"$bin/cuda.log" 2>&1 || {
  tail -n 60 "$bin/cuda.log"
  failures "$bin/cuda.log"
  exit 1
}
grep -E -- '^(ok|FAIL)|^--- SKIP' "$bin/cuda.log"
if grep -E 'needs (a C compiler|NVRTC|the reference model|the test inputs|the ONNX node tests)|not found through the standard search path' "$bin/cuda.log"; then
  echo "CUDA tests skipped for a missing tool or file (above)"
  exit 1
fi

if [ "$(uname -m)" = x86_64 ]; then
  echo "== linux/arm64 under qemu-user: the CPU kernels' tests, and the shared models with the arm64 kiln"
  GOARCH=arm64 go test -c -o "$bin/cpu-arm64.test" ./device/cpu
  (cd device/cpu && qemu-aarch64 "$bin/cpu-arm64.test")
  # kiln opens libraries at run time (purego), so it is linked with the C
  # library: qemu finds arm64's under -L.
  for m in mobilenet_v2 squeezenet1_1 resnet_mini bert_mini yolo_tiny; do
    d=../shared/models/$m
    if [ ! -f "$d/model.onnx" ]; then
      echo "missing $d/model.onnx (the shared reference models)"
      exit 1
    fi
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin/kiln-arm64" run "$d/model.onnx" --data "$d/test_data_set_0"
  done
fi

echo "== go test -race (concurrent packages)"
go test -count=1 -race ./engine ./engine/plan ./serve/... ./api/...

echo "== fuzz (short)"
# Go's fuzzer can report "context deadline exceeded" when -fuzztime ends while
# it is still minimizing a new input (a scheduling race under load, not a
# finding): such a run is repeated, at most twice. A real failure writes its input to
# testdata/fuzz and fails again. Minimizing a new input is capped at 5 s
# (-fuzzminimizetime): a 10 s run gains nothing from a 60 s shrink of an
# input whose every run is a whole inference.
fuzz() {
  local log try
  log=$(mktemp)
  for try in 1 2 3; do
    if go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-10s}" -fuzzminimizetime 5s "$1" 2>&1 | tee "$log"; then
      rm -f "$log"
      return 0
    fi
    if ! grep -q 'context deadline exceeded' "$log" || grep -q 'Failing input written' "$log"; then
      break
    fi
    [ "$try" = 3 ] || echo "== $2: the fuzzer's deadline race (attempt $try of 3), once more"
  done
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
fuzz ./serve FuzzImagePrep
fuzz ./perf FuzzParseRange
fuzz ./perf FuzzJSONInputs
fuzz ./serve/tokenizer FuzzEncode
fuzz ./serve/tokenizer FuzzParse
fuzz ./serve/httpapi FuzzShmInfer
fuzz ./serve/httpapi FuzzSettingsBodies

echo "== the Helm chart against a real kube-apiserver (server-side dry run)"
if wait "$kubepid"; then
  tail -n 3 "$kubelog"
  go test -count=1 -v -run '^TestKubeDryRun$' ./deploy >"$bin/kube.log" 2>&1 || { tail -n 60 "$bin/kube.log"; exit 1; }
  grep -E -- '^(ok|FAIL)|^--- (PASS|SKIP)|^\s+--- ' "$bin/kube.log"
  if grep -q -- '--- SKIP: TestKubeDryRun' "$bin/kube.log"; then
    echo "TestKubeDryRun skipped although scripts/deps-kube.sh installed its parts"
    exit 1
  fi
else
  # no module proxy or no apt here: the test skips, saying what is missing
  echo "scripts/deps-kube.sh could not install kube-apiserver and etcd; TestKubeDryRun skips:"
  tail -n 20 "$kubelog"
fi
rm -f "$kubelog"
echo "== all tests passed"
