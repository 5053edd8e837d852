#!/usr/bin/env bash
# Benchmarks kiln's CPU runtime on every model of ../shared/models against ONNX
# Runtime 1.30 (npm onnxruntime-node, CPU, 2 intra-op threads) in the same run,
# on the same machine, model file and input shapes, and writes a markdown table.
# usage: bench/cpu-models.sh [ITERATIONS] > bench/results/cpu-models.md
# Environment, for running elsewhere (the quiet GPU machine: Python's
# onnxruntime, no Go, no Node):
#   KILN=path      a built kiln instead of building one (needs no Go)
#   ORT_PY=1       ONNX Runtime through Python's onnxruntime (bench/ort_time.py,
#                  the same session options) instead of onnxruntime-node
#   CPUS=list      pin kiln and ONNX Runtime to these cores (taskset -c, e.g. 2-3)
#   MODELS=dir     where the models are (default ../shared/models)
#   ONLY=a,b       only these models (names as in the table, e.g.
#                  ONLY=resnet_mini,yolo_tiny); default: every one found
#   EXTRA=dir      also the models exported by ../shared/tools/export_models.py
#                  into dir (resnet50, bert_base), where present
#   PROFILE=dir    also write, per model, kiln's per-layer times of the plan
#                  (`kiln run --dump-profile`, dir/MODEL.kiln.txt) and ONNX
#                  Runtime's per-node ones (bench/ort_profile.js, or
#                  bench/ort_profile.py with ORT_PY; dir/MODEL.ort.txt), each
#                  over the same ITERATIONS runs, for comparing layer by layer
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-30}
models=${MODELS:-../shared/models}
ortdir=${ORT_DIR:-/tmp/kiln-ort}
pin=()
[ -n "${CPUS:-}" ] && pin=(taskset -c "$CPUS")
if [ -n "${ORT_PY:-}" ]; then
  ortver="$(python3 -c 'import onnxruntime; print(onnxruntime.__version__)') (Python onnxruntime, bench/ort_time.py"
  ort_time() { "${pin[@]}" python3 bench/ort_time.py "$@"; }
  ort_profile() { "${pin[@]}" python3 bench/ort_profile.py "$@"; }
else
  if [ ! -d "$ortdir/node_modules/onnxruntime-node" ]; then
    mkdir -p "$ortdir"
    (cd "$ortdir" && npm install --silent --ignore-scripts onnxruntime-node@1.30.0 >&2)
  fi
  ortver="1.30.0 (npm onnxruntime-node"
  ort_time() { NODE_PATH=$ortdir/node_modules "${pin[@]}" node bench/ort_time.js "$@"; }
  ort_profile() { NODE_PATH=$ortdir/node_modules "${pin[@]}" node bench/ort_profile.js "$@"; }
fi
# each run its own binary and plans (runs side by side do not overwrite each other's)
plandir=$(mktemp -d)
trap 'rm -rf "$plandir"' EXIT
bin=$plandir/kiln
if [ -n "${KILN:-}" ]; then
  cp "$KILN" "$bin"
else
  go build -o "$bin" ./cmd/kiln
fi
kiln() { "${pin[@]}" "$bin" "$@"; }
declare -A shapes=(
  [resnet_mini]="input:1x3x224x224"
  [mobilenet_v2]="input:1x3x224x224"
  [squeezenet1_1]="input:1x3x224x224"
  [bert_mini]="input_ids:1x128 attention_mask:1x128"
  [yolo_tiny]="images:1x3x320x320"
  [resnet50]="input:1x3x224x224"
  [bert_base]="input_ids:1x128 attention_mask:1x128"
)
declare -A target=([resnet_mini]=1.29 [mobilenet_v2]=3.85 [squeezenet1_1]=3.58 [bert_mini]=1.90 [yolo_tiny]=7.09)
echo "# CPU: kiln vs ONNX Runtime, batch 1"
echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), GOMAXPROCS=$("${pin[@]}" nproc)${CPUS:+, every process pinned to cores $CPUS (taskset)}."
echo "Command: \`bench/cpu-models.sh $iters\`; median latency of $iters runs after warm-up, random inputs, same shapes for both."
echo "ONNX Runtime $ortver, CPU EP, 2 intra-op threads, all graph optimizations) ran in the same script."
echo
echo "kiln: \`kiln build\` (optimizer level 2, tactics timed, profile fixed at the input shape) then \`kiln run PLAN --intra-op-threads 2\` (two threads always, as ONNX Runtime's);"
echo "\"unoptimized\" is the ONNX graph as it is (\`kiln run --opt-level 0\`)."
echo
echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min). On a shared machine the minimum"
echo "(\"kiln plan min ms\") moves far less than the median; ORT prints its median only."
echo
# kiln's CPU time per inference (both threads, not counting time spent waiting
# for a core: steady under load where wall times are not), where perf is at hand.
haveperf=$(command -v perf >/dev/null && perf stat -x, -e task-clock true >/dev/null 2>&1 && echo 1 || true)
if [ -n "$haveperf" ]; then
  echo "\"kiln CPU ms\" is \`perf stat -e task-clock\` of \`kiln run PLAN --iterations $((iters+1))\` minus \`--iterations 1\`,"
  echo "divided by $iters: kiln's own CPU time per inference on both threads, which load moves little."
else
  echo "\"kiln CPU ms\" is empty: perf (linux-perf) is not installed."
fi
echo
echo "| model | input | load (1 min) | kiln plan p50 ms | kiln plan min ms | kiln CPU ms | kiln unoptimized p50 ms | ONNX Runtime ms (this run) | ratio ORT/kiln plan | ORT ms in TARGETS.md |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for m in resnet_mini mobilenet_v2 squeezenet1_1 bert_mini yolo_tiny resnet50 bert_base; do
  f=$models/$m/model.onnx
  [ -f "$f" ] || f=${EXTRA:-/nonexistent}/$m/model.onnx
  [ -f "$f" ] || continue
  if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$m,"* ]]; then continue; fi
  args=(); prof=()
  for s in ${shapes[$m]}; do
    args+=(--shape "$s")
    prof+=(--profile "$s")
  done
  load=$(cut -d' ' -f1 /proc/loadavg)
  kiln build "$f" -o "$plandir/$m.plan" "${prof[@]}" >/dev/null 2>&1
  kout=$(kiln run "$plandir/$m.plan" --intra-op-threads 2 --iterations "$iters" --warmup 5)
  k=$(echo "$kout" | sed -n 's/.* p50 \([0-9.]*\) .*/\1/p')
  kmin=$(echo "$kout" | sed -n '/^latency/s/.*min \([0-9.]*\) .*/\1/p')
  kcpu=
  if [ -n "$haveperf" ]; then
    tc() { perf stat -x, -e task-clock "$bin" run "$plandir/$m.plan" --intra-op-threads 2 --warmup 0 --iterations "$1" 2>&1 >/dev/null | grep task-clock | cut -d, -f1; }
    a=$(tc 1); b=$(tc $((iters+1)))
    kcpu=$(awk -v a="$a" -v b="$b" -v n="$iters" 'BEGIN{printf "%.3f", (b-a)/n}')
  fi
  u=$(kiln run "$f" --intra-op-threads 2 --opt-level 0 "${args[@]}" --iterations "$iters" --warmup 5 | sed -n 's/.* p50 \([0-9.]*\) .*/\1/p')
  o=$(ort_time "$f" "$iters" ${shapes[$m]})
  if [ -n "${PROFILE:-}" ]; then
    mkdir -p "$PROFILE"
    kiln run "$plandir/$m.plan" --intra-op-threads 2 --iterations "$iters" --warmup 5 --dump-profile \
      > "$PROFILE/$m.kiln.txt" 2>&1 || echo "kiln --dump-profile failed" >> "$PROFILE/$m.kiln.txt"
    ort_profile "$f" "$iters" ${shapes[$m]} > "$PROFILE/$m.ort.txt" 2>&1 ||
      echo "ONNX Runtime's profile failed" >> "$PROFILE/$m.ort.txt"
  fi
  r=$(awk -v k="$k" -v o="$o" 'BEGIN{printf "%.2f", o/k}')
  echo "| $m | ${shapes[$m]} | $load | $k | $kmin | $kcpu | $u | $o | $r | ${target[$m]:--} |"
done
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
