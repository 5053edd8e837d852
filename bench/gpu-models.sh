#!/usr/bin/env bash
# The GPU model table of issue 10: every model of ../shared/models, the large
# exported ones (resnet50, bert_base, efficientnet_b0, vit_b_16) and three
# networks made to exercise what failed on the GPU (bench/gpu_models.py:
# text_det, crnn_rec, yolo_nms), each built with kiln build --device cuda in
# FP32 and FP16, first with --strict-device (no layer on the CPU) and, when
# that is refused, without it (the table then counts the layers on the CPU);
# each plan is checked against kiln's CPU FP32 outputs at three input sizes
# (kiln run --save-data on the CPU, then kiln run PLAN --data: FP32 within
# rtol 1e-3 / atol 1e-4, FP16 within the FP16 tolerances and a cosine of at
# least 0.9999). Then kiln conformance --device cuda on the ONNX node tests.
#
# Here (Go):              bench/gpu-models.sh build     -> .gpubin-models/
#                         (kiln, ../shared models, export_models.py, the node tests)
# On the GPU machine:     bench/gpu-models.sh run OUTDIR [NAME...]   (carry .gpubin-models;
#                         PyTorch exports the models that are not in ../shared)
#
# NAMES default to all; "shared" and "exported" name the two groups, "conformance"
# the node-test run. OUTDIR gets table.md, conformance.txt and logs.tgz.
# NO_TIMING=1 builds without tactic timing (kiln build --no-timing).
# KEEP_PLANS=1 keeps the plans (WORK/NAME.fp32.plan, .fp16.plan) for later runs.
# KILN_CUDA_UNVERIFIED defaults to 1 here: the run checks every CUDA kernel,
# including those not yet run on a GPU, which kiln otherwise leaves to the
# CPU (device/cuda/gpuexec/verified.go); KILN_CUDA_UNVERIFIED=0 measures
# what users get by default.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=.gpubin-models
shared_models="resnet_mini mobilenet_v2 squeezenet1_1 bert_mini yolo_tiny"
exported_models="text_det crnn_rec yolo_nms resnet50 bert_base efficientnet_b0 vit_b_16"

# sizes of the shared models: three lines of kiln run --shape flags
shared_sizes() {
  case $1 in
  resnet_mini | mobilenet_v2 | squeezenet1_1)
    printf -- '--shape input:%dx3x224x224\n' 1 2 4
    ;;
  bert_mini)
    printf -- '--shape input_ids:%s --shape attention_mask:%s\n' 1x128 1x128 2x64 2x64 4x32 4x32
    ;;
  yolo_tiny)
    printf -- '--shape images:%s\n' 1x3x320x320 1x3x256x384 2x3x416x416
    ;;
  esac
}

# profile_flags SIZES_FILE: a --profile per input covering the three sizes
# (opt at the first)
profile_flags() {
  python3 - "$1" <<'PY'
import sys
shapes = {}
for line in open(sys.argv[1]):
    parts = line.split()
    for flag, spec in zip(parts[::2], parts[1::2]):
        name, dims = spec.rsplit(":", 1)
        shapes.setdefault(name, []).append([int(d) for d in dims.split("x")])
out = []
for name, ss in shapes.items():
    lo = [min(d) for d in zip(*ss)]
    hi = [max(d) for d in zip(*ss)]
    x = lambda s: "x".join(map(str, s))
    out.append("--profile %s:%s,%s,%s" % (name, x(lo), x(ss[0]), x(hi)))
print(" ".join(out))
PY
}

case "${1:-}" in
build)
  set -e
  rm -rf $dir
  mkdir -p $dir/models
  go build -ldflags='-s -w' -o $dir/kiln ./cmd/kiln
  gzip -9f $dir/kiln # unpacked by run (the device's carry limit is 64 MiB)
  for m in $shared_models; do
    [ -f ../shared/models/$m/model.onnx ] || continue
    mkdir -p $dir/models/$m
    cp ../shared/models/$m/model.onnx $dir/models/$m/
  done
  cp ../shared/tools/export_models.py $dir/
  if [ -d /usr/share/libonnx-testdata/data/node ]; then
    tar czf $dir/node.tgz -C /usr/share/libonnx-testdata/data node
  fi
  chmod -R u+w $dir
  du -sh $dir
  ;;
run)
  out=${2:?usage: bench/gpu-models.sh run OUTDIR [NAME...]}
  shift 2
  names=("$@")
  [ ${#names[@]} -gt 0 ] || names=(shared exported conformance)
  list=()
  conf=no
  for n in "${names[@]}"; do
    case $n in
    shared) list+=($shared_models) ;;
    exported) list+=($exported_models) ;;
    conformance) conf=yes ;;
    *) list+=("$n") ;;
    esac
  done
  mkdir -p "$out/logs"
  out=$(cd "$out" && pwd)
  w=${WORK:-/tmp/kiln-gpu-models}
  mkdir -p "$w"
  export KILN_CUDA_UNVERIFIED=${KILN_CUDA_UNVERIFIED:-1}
  # the kiln binary travels gzipped (the device's carry limit is 64 MiB)
  [ -x "$dir/kiln" ] || [ ! -f "$dir/kiln.gz" ] || { gzip -dc "$dir/kiln.gz" >"$dir/kiln" && chmod +x "$dir/kiln"; }
  k=${KILN:-$PWD/$dir/kiln}
  dev=${DEVICE:-cuda}
  timing=()
  [ -z "${NO_TIMING:-}" ] || timing=(--no-timing)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
  toexport=()
  for m in "${list[@]}"; do
    if [ -f "$dir/models/$m/model.onnx" ]; then
      mkdir -p "$w/$m"
      cp "$dir/models/$m/model.onnx" "$w/$m/"
      shared_sizes "$m" >"$w/$m/sizes.txt"
    else
      toexport+=("$m")
    fi
  done
  if [ ${#toexport[@]} -gt 0 ]; then
    t0=$(date +%s)
    python3 bench/gpu_models.py "$dir/export_models.py" "$w" "${toexport[@]}" >"$out/logs/export.log" 2>&1
    echo "export (${toexport[*]}): exit $? in $(($(date +%s) - t0)) s" | tee -a "$out/summary.txt"
  fi
  {
    echo "GPU: $(cat "$out/gpu.txt")"
    echo
    echo "| model | precision | no fallback | layers (build log) | size 1 | size 2 | size 3 | build s |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  } >"$out/table.md"
  for m in "${list[@]}"; do
    f=$w/$m/model.onnx
    if [ ! -f "$f" ]; then
      echo "| $m | - | not exported (see export.log) | | | | | |" >>"$out/table.md"
      continue
    fi
    mapfile -t sizes <"$w/$m/sizes.txt"
    read -r -a prof <<<"$(profile_flags "$w/$m/sizes.txt")"
    for i in 0 1 2; do
      read -r -a sz <<<"${sizes[$i]}"
      "$k" run "$f" "${sz[@]}" --seed $((i + 1)) --save-data "$w/$m/set_$i" >"$out/logs/$m.cpu.$i.log" 2>&1 ||
        echo "cpu reference $m size $((i + 1)): exit $?" >>"$out/summary.txt"
    done
    for p in fp32 fp16; do
      flag=()
      check=()
      [ $p = fp16 ] && flag=(--fp16) && check=(--cosine 0.9999)
      plan=$w/$m.$p.plan
      t0=$(date +%s)
      "$k" build "$f" --device "$dev" "${flag[@]}" "${prof[@]}" "${timing[@]}" --strict-device -o "$plan" >"$out/logs/$m.$p.build.log" 2>&1
      strict=$?
      nofb=yes
      if [ $strict -ne 0 ]; then
        nofb="no (exit $strict)"
        "$k" build "$f" --device "$dev" "${flag[@]}" "${prof[@]}" "${timing[@]}" -o "$plan" >"$out/logs/$m.$p.fallback.build.log" 2>&1
        bx=$?
        layers=$(grep -hE "layers on $dev" "$out/logs/$m.$p.fallback.build.log" | tail -1 | cut -c1-120)
        [ $bx -eq 0 ] || layers="build exit $bx: $(grep -h 'kiln:' "$out/logs/$m.$p.fallback.build.log" | tail -1 | cut -c1-160)"
      else
        layers=$(grep -hE "layers on $dev" "$out/logs/$m.$p.build.log" | tail -1 | cut -c1-120)
      fi
      secs=$(($(date +%s) - t0))
      cells=()
      for i in 0 1 2; do
        if [ ! -f "$plan" ] || [ ! -f "$w/$m/set_$i/output_0.pb" ]; then
          cells+=("-")
          continue
        fi
        "$k" run "$plan" --data "$w/$m/set_$i" "${check[@]}" >"$out/logs/$m.$p.run.$i.log" 2>&1
        rc=$?
        case $rc in
        0) cells+=("ok") ;;
        1) cells+=("MISMATCH") ;;
        *) cells+=("error $rc") ;;
        esac
      done
      echo "| $m | $p | $nofb | ${layers:--} | ${cells[0]} | ${cells[1]} | ${cells[2]} | $secs |" >>"$out/table.md"
      [ -n "${KEEP_PLANS:-}" ] || rm -f "$plan"
    done
  done
  if [ $conf = yes ] && [ -f $dir/node.tgz ]; then
    mkdir -p "$w/suite"
    tar xzf $dir/node.tgz -C "$w/suite"
    t0=$(date +%s)
    timeout "${CONF_TIMEOUT:-300}" "$k" conformance --device "$dev" -v "$w/suite/node" >"$out/logs/conformance.log" 2>&1
    echo "conformance --device $dev: exit $? in $(($(date +%s) - t0)) s" | tee -a "$out/summary.txt"
    grep -E "passed, .* failed" "$out/logs/conformance.log" | tail -1 | tee "$out/conformance.txt"
    grep -E "^FAIL" "$out/logs/conformance.log" | cut -c1-200 >"$out/logs/conformance.failures.txt"
  fi
  cat "$out/table.md"
  tar czf "$out/logs.tgz" -C "$out" logs && rm -rf "$out/logs"
  ;;
*)
  echo "usage: bench/gpu-models.sh build | run OUTDIR [NAME...]" >&2
  exit 2
  ;;
esac
