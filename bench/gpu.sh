#!/usr/bin/env bash
# GPU checks and timings of kiln's CUDA executor (device/cuda/gpuexec), in one
# run on the GPU machine, which has no Go toolchain.
#
# Here (a CPU machine with Go):   bench/gpu.sh build
#   builds the test binaries into .gpubin/ (git-ignored through
#   .git/info/exclude) and copies the reference models there.
# On the GPU machine (carry .gpubin):   bench/gpu.sh run OUTDIR
#   runs the bindings' tests, the executor's GPU tests (every model against
#   kiln's CPU FP32 output, rtol 1e-3 / atol 1e-4, TF32 off) and the timing,
#   writing logs and timing.md to OUTDIR and a summary to stdout.
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
build)
  set -e
  mkdir -p .gpubin/models
  for m in resnet_mini mobilenet_v2 squeezenet1_1 bert_mini; do
    mkdir -p .gpubin/models/$m
    cp -r ../shared/models/$m/model.onnx ../shared/models/$m/test_data_set_0 .gpubin/models/$m/
  done
  chmod -R u+w .gpubin
  go test -c -ldflags='-s -w' -o .gpubin/cuda.test ./device/cuda/
  go test -c -ldflags='-s -w' -o .gpubin/gpuexec.test ./device/cuda/gpuexec/
  du -sh .gpubin
  ;;
run)
  out=${2:?usage: bench/gpu.sh run OUTDIR}
  mkdir -p "$out"
  root=$PWD
  export KILN_MODELS=$root/.gpubin/models
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  (cd device/cuda && "$root/.gpubin/cuda.test" -test.v -test.timeout 300s) >"$out/cuda.log" 2>&1
  echo "cuda bindings: exit $?"
  # One process per group, so that a crash in one does not hide the others.
  : >"$out/gpuexec.log"
  for pat in 'TestModelsOnGPU/.*/.*/kernels' 'TestOpsOnGPU/.*/kernels' 'TestModelsOnGPU/.*/.*/libs' 'TestOpsOnGPU/.*/libs' \
    'TestContextsConcurrently|TestGPUErrors' 'TestLayersOnGPU' 'TestCompile|TestPlan|TestNewEngine'; do
    (cd device/cuda/gpuexec && "$root/.gpubin/gpuexec.test" -test.v -test.timeout 300s -test.run "$pat") >>"$out/gpuexec.log" 2>&1
    echo "gpuexec tests $pat: exit $?"
  done
  grep -E '^(--- |    --- )(FAIL|SKIP)|panic|^FAIL|^ok' "$out/cuda.log" "$out/gpuexec.log" | head -60
  grep -E 'largest difference|layers:|values match' "$out/gpuexec.log" | cut -c1-300 | head -60
  if [ -z "${NO_TIMING:-}" ]; then
    (cd device/cuda/gpuexec && KILN_GPU_TIMING=1 KILN_GPU_TIMING_OUT="$out/timing.md" \
      "$root/.gpubin/gpuexec.test" -test.v -test.timeout 300s -test.run GPUTiming) >"$out/timing.log" 2>&1
    echo "timing: exit $?"
    cat "$out/timing.md" 2>/dev/null || tail -20 "$out/timing.log"
  fi
  ;;
*)
  echo "usage: bench/gpu.sh build | run OUTDIR" >&2
  exit 2
  ;;
esac
