#!/usr/bin/env bash
# The CUDA executor's op coverage on the GPU machine, in one run (it has no
# Go toolchain).
#
# Here (a CPU machine with Go):   bench/gpu-ops.sh build
#   builds the executor's test binary into .gpubin-ops/ (git-ignored) and
#   packs the ONNX node tests ($KILN_NODE_DIR, default Debian's
#   /usr/share/libonnx-testdata/data/node) as .gpubin-ops/node.tgz.
# On the GPU machine (carry .gpubin-ops):   bench/gpu-ops.sh run OUTDIR
#   runs TestNewOpsOnGPU (every op family of the registry against kiln's
#   CPU engine: FP32 within rtol 1e-3 / atol 1e-4, FP16 cosine >= 0.999),
#   TestOpsOnGPU (the ops that ran before) and TestNodeSuiteOnGPU (every
#   node test the CPU passes, partitioned for the GPU), each resumed after
#   the case that left the CUDA context unusable, if one does, and writes
#   OUTDIR/summary.txt and OUTDIR/logs.tgz (the -test.v logs). The stages
#   get 200, 100 and 240 s (KILN_NEWOPS_SECONDS, KILN_OPS_SECONDS,
#   KILN_NODESUITE_SECONDS), so that the run fits one 10-minute call.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.gpubin-ops

case "${1:-}" in
build)
  mkdir -p "$bin"
  go test -c -o "$bin/gpuexec.test" ./device/cuda/gpuexec || exit 1
  node=${KILN_NODE_DIR:-/usr/share/libonnx-testdata/data/node}
  if [ -d "$node" ]; then
    tar -C "$(dirname "$node")" -czf "$bin/node.tgz" "$(basename "$node")"
  else
    echo "no ONNX node tests in $node: TestNodeSuiteOnGPU will skip" >&2
    rm -f "$bin/node.tgz"
  fi
  du -sh "$bin"
  ;;
run)
  out=${2:?usage: bench/gpu-ops.sh run OUTDIR}
  mkdir -p "$out"
  root=$(pwd)
  logs=$(mktemp -d)
  work=$(mktemp -d)
  if [ -f "$bin/node.tgz" ]; then
    tar -C "$work" -xzf "$bin/node.tgz"
    export KILN_NODE_DIR=$work/node
  fi
  # stage NAME RUN_PATTERN SECONDS: runs the pattern within SECONDS,
  # resuming after a sticky CUDA error (at most 20 times); logs go to
  # $logs/NAME.N.log.
  stage() {
    local name=$1 pat=$2 end=$(( $(date +%s) + $3 )) from="" i left
    for i in $(seq 1 20); do
      left=$(( end - $(date +%s) ))
      [ "$left" -lt 20 ] && { echo "$name: no time left to resume after $from" >>"$logs/resumed.txt"; break; }
      (cd device/cuda/gpuexec 2>/dev/null || cd "$root"; KILN_GPU_FROM="$from" \
        "$root/$bin/gpuexec.test" -test.v -test.timeout "${left}s" -test.run "$pat") >"$logs/$name.$i.log" 2>&1
      from=$(grep -o 'STICKY CUDA ERROR in [^:]*' "$logs/$name.$i.log" | head -1 | sed 's/^STICKY CUDA ERROR in //')
      [ -z "$from" ] && break
      echo "$name: resuming after $from" >>"$logs/resumed.txt"
    done
  }
  t0=$(date +%s)
  # time limits (seconds) of the three stages: they fit one 10-minute call
  stage newops '^TestNewOpsOnGPU$' "${KILN_NEWOPS_SECONDS:-200}"
  stage ops '^TestOpsOnGPU$' "${KILN_OPS_SECONDS:-100}"
  stage nodesuite '^TestNodeSuiteOnGPU$' "${KILN_NODESUITE_SECONDS:-240}"
  {
    echo "gpu-ops on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1), $(date -u +%FT%TZ), $(( $(date +%s) - t0 )) s"
    echo
    for s in newops ops; do
      pass=$(cat "$logs"/$s.*.log | grep -c '^    --- PASS')
      fail=$(cat "$logs"/$s.*.log | grep -c '^    --- FAIL')
      skip=$(cat "$logs"/$s.*.log | grep -c -- '--- SKIP')
      echo "$s: $pass subtests passed, $fail failed, $skip skipped"
      cat "$logs"/$s.*.log | grep '^    --- FAIL' | sed 's/^ *--- FAIL: /  FAIL /'
    done
    echo
    cat "$logs"/nodesuite.*.log | grep -o 'GPU node suite: .*' |
      awk '{p+=$4; n+=$7; g+=substr($8,2); f+=$13; x+=$16} END {if (NR) printf "node suite on the GPU: %d passed of %d (%d entirely on the GPU, %d with fallback), %d failed\n", p, n, g, f, x; else print "node suite: no result (skipped or crashed; see logs)"}'
    cat "$logs"/nodesuite.*.log | grep -o 'stopped before .*'
    cat "$logs"/nodesuite.*.log | grep -E '^\s+gpu_ops_test.go:[0-9]+: test_' | sed 's/^ *gpu_ops_test.go:[0-9]*: /  FAIL /' | cut -c1-300 | head -100
    [ -f "$logs/resumed.txt" ] && { echo; cat "$logs/resumed.txt"; }
    grep -h -E '^(--- SKIP|ok|FAIL|panic)' "$logs"/*.log | sort | uniq -c
  } >"$out/summary.txt"
  tar -C "$logs" -czf "$out/logs.tgz" .
  cat "$out/summary.txt"
  rm -rf "$work" "$logs"
  ;;
*)
  sed -n '2,18p' "$0" >&2
  exit 2
  ;;
esac
