#!/usr/bin/env bash
# Checks partitioning with CPU fallback on the GPU machine: models with ops
# the CUDA executor lacks (ConvTranspose, CumSum, linear Resize, NonMaxSuppression between
# convolutions; HardSigmoid beside them) build with --device cuda (FP32 and
# FP16), the build log names the layers that fall back and sums up, and
# kiln run matches the CPU's FP32 reference outputs on every test set; a
# model the GPU runs entirely still builds as one segment; --strict-device
# (when the binary has it) refuses the fallback models.
#
# Here (Go):            bench/gpu-fallback.sh build         -> .gpubin-fallback/
#                       (kiln binary, bench/fallback's models with CPU references, resnet_mini)
# On the GPU machine:   bench/gpu-fallback.sh run OUTDIR    (carry .gpubin-fallback)
#
# KILN overrides the binary (default .gpubin-fallback/kiln), MODELS the
# models folder (default .gpubin-fallback/models), DEVICE the device
# (default cuda; "cpu" tries the script here).
set -uo pipefail
cd "$(dirname "$0")/.."
dir=.gpubin-fallback
case "${1:-}" in
build)
  set -e
  rm -rf $dir/models
  mkdir -p $dir/models
  go build -ldflags='-s -w' -o $dir/kiln ./cmd/kiln
  go run ./bench/fallback -out $dir/models
  gzip -9f $dir/kiln # unpacked by run (the device's carry limit is 64 MiB)
  if [ -d ../shared/models/resnet_mini ]; then
    mkdir -p $dir/models/resnet_mini
    cp -r ../shared/models/resnet_mini/model.onnx ../shared/models/resnet_mini/test_data_set_0 $dir/models/resnet_mini/
  fi
  chmod -R u+w $dir
  du -sh $dir
  ;;
run)
  out=${2:?usage: bench/gpu-fallback.sh run OUTDIR}
  mkdir -p "$out"
  # the kiln binary travels gzipped (the device's carry limit is 64 MiB)
  [ -x "$dir/kiln" ] || [ ! -f "$dir/kiln.gz" ] || { gzip -dc "$dir/kiln.gz" >"$dir/kiln" && chmod +x "$dir/kiln"; }
  k=${KILN:-$dir/kiln}
  d=${MODELS:-$dir/models}
  dev=${DEVICE:-cuda}
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  strict=no
  "$k" build -h 2>&1 | grep -q -- --strict-device && strict=yes
  printf '%-20s %-5s %-6s %-44s %s\n' model prec build layers "run --data (exit per test set)" | tee "$out/table.txt"
  for m in fallback_unet fallback_unet_dyn fallback_nms resnet_mini; do
    [ -f "$d/$m/model.onnx" ] || continue
    extra=()
    [ $m = fallback_unet_dyn ] && extra=(--dim h=32,64,96 --dim w=32,64,96)
    for p in fp32 fp16; do
      flag=()
      [ $p = fp16 ] && flag=(--fp16)
      plan="$out/$m.$p.plan"
      log="$out/$m.$p.build.log"
      "$k" build "$d/$m/model.onnx" --device "$dev" "${flag[@]}" "${extra[@]}" -o "$plan" >"$log" 2>&1
      bx=$?
      summary=$(grep -E "layers on $dev" "$log" | tail -1 | sed 's/^[^0-9]*//')
      runs=""
      for set in "$d/$m"/test_data_set_*; do
        "$k" run "$plan" --data "$set" >"$out/$m.$p.$(basename "$set").run.log" 2>&1
        runs="$runs $(basename "$set" | sed 's/test_data_set_/set/')=$?"
      done
      printf '%-20s %-5s %-6s %-44s %s\n' "$m" "$p" "exit$bx" "${summary:0:44}" "$runs" | tee -a "$out/table.txt"
    done
  done
  for m in fallback_unet fallback_unet_dyn fallback_nms; do
    for p in fp32 fp16; do
      echo "== $m $p: build log (fallbacks, summary, accuracy)"
      grep -E "runs on the CPU|layers on|cosine|^ *(output|y|selected|scores) |kiln:" "$out/$m.$p.build.log" | head -12
      for f in "$out/$m.$p".test_data_set_*.run.log; do
        [ -f "$f" ] || continue
        echo "-- $(basename "$f"):"; grep -E "^output|MISMATCH|max|kiln:" "$f" | head -6
      done
    done
  done
  echo "== latency, fallback_unet fp32 (3 GPU segments, 2 CPU ones) and resnet_mini fp32 (one segment)"
  for m in fallback_unet resnet_mini; do
    [ -f "$out/$m.fp32.plan" ] && "$k" run "$out/$m.fp32.plan" --iterations 50 --warmup 10 2>&1 | grep -E "throughput|latency|kiln:"
  done
  echo "== inspect fallback_unet fp32 (notes)"
  "$k" inspect "$out/fallback_unet.fp32.plan" 2>&1 | grep -iE "cpu|segment|layers on" | head -10
  if [ $strict = yes ]; then
    echo "== --strict-device (must refuse, naming ConvTranspose, Resize and CumSum)"
    "$k" build "$d/fallback_unet/model.onnx" --device "$dev" --strict-device -o "$out/strict.plan" 2>&1 | tail -2
    echo "exit ${PIPESTATUS[0]}"
  else
    echo "== --strict-device: not in this kiln binary (cmd/kiln does not have the flag yet)"
  fi
  rm -f "$out"/*.plan
  ;;
*)
  echo "usage: bench/gpu-fallback.sh build | run OUTDIR" >&2
  exit 2
  ;;
esac
