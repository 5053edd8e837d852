#!/usr/bin/env bash
# Checks kiln's plan flow on the GPU machine: kiln build --device cuda writes a
# GPU plan (fingerprint, compiled kernels), kiln run checks it against the
# reference outputs, kiln inspect shows it, and a CPU plan is refused there
# with a clear message.
#
# Here (Go):             bench/gpu-plans.sh build    -> .gpubin-plans/
# On the GPU machine:    bench/gpu-plans.sh run OUTDIR   (carry .gpubin-plans)
set -uo pipefail
cd "$(dirname "$0")/.."
models=${MODELS:-"resnet_mini bert_mini yolo_tiny"}
case "${1:-}" in
build)
  set -e
  mkdir -p .gpubin-plans/models
  for m in $models; do
    mkdir -p .gpubin-plans/models/$m
    cp -r ../shared/models/$m/model.onnx ../shared/models/$m/test_data_set_0 .gpubin-plans/models/$m/
  done
  chmod -R u+w .gpubin-plans
  go build -ldflags='-s -w' -o .gpubin-plans/kiln ./cmd/kiln
  .gpubin-plans/kiln build .gpubin-plans/models/resnet_mini/model.onnx -o .gpubin-plans/resnet_mini.cpu.plan --no-timing >/dev/null
  gzip -9f .gpubin-plans/kiln # unpacked by run (the device's carry limit is 64 MiB)
  du -sh .gpubin-plans
  ;;
run)
  out=${2:?usage: bench/gpu-plans.sh run OUTDIR}
  mkdir -p "$out"
  # the kiln binary travels gzipped (the device's carry limit is 64 MiB)
  [ -x ".gpubin-plans/kiln" ] || [ ! -f ".gpubin-plans/kiln.gz" ] || { gzip -dc ".gpubin-plans/kiln.gz" >".gpubin-plans/kiln" && chmod +x ".gpubin-plans/kiln"; }
  k=.gpubin-plans/kiln
  d=.gpubin-plans/models
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  for m in $models; do
    for p in fp32 fp16; do
      flag=""
      [ $p = fp16 ] && flag=--fp16
      args=(--calib-data "$d/$m")
      [ $p = fp32 ] && args=()
      echo "== $m $p"
      $k build "$d/$m/model.onnx" --device cuda $flag "${args[@]}" -o "$out/$m.$p.plan" >"$out/$m.$p.build.log" 2>&1
      echo "build: exit $?"; grep -E "accuracy|cosine|  output|kiln:" "$out/$m.$p.build.log" | tail -6
      $k run "$out/$m.$p.plan" --data "$d/$m/test_data_set_0" >"$out/$m.$p.run.log" 2>&1
      echo "run --data: exit $?"; grep -E "^output|kiln:" "$out/$m.$p.run.log"
      $k run "$out/$m.$p.plan" --iterations 50 --warmup 10 2>&1 | grep -E "throughput|latency|kiln:"
    done
  done
  $k inspect "$out/resnet_mini.fp32.plan" | head -12
  echo "== CPU plan on the GPU machine (its CPU fingerprint may differ):"
  $k run .gpubin-plans/resnet_mini.cpu.plan 2>&1 | tail -2
  echo "== GPU plan run with the wrong input shape:"
  $k run "$out/resnet_mini.fp32.plan" --shape input:64x3x224x224 2>&1 | tail -1
  rm -f "$out"/*.plan
  ;;
*)
  echo "usage: bench/gpu-plans.sh build | run OUTDIR" >&2
  exit 2
  ;;
esac
