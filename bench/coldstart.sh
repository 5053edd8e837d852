#!/usr/bin/env bash
# Cold start of kiln serve: the time from the process's start to
# /v2/health/ready answering 200, for a repository of one shared model
# (each of ../shared/models) and of all five, started
#   - on an empty plan cache: every model is built from ONNX at start;
#   - on a plan cache filled beforehand by `kiln build --model-repository`
#     (what the Helm chart's build-plans initContainer runs): cached plans.
# Also times that kiln build. Median, min and max of REPEATS starts each.
# usage: bench/coldstart.sh [REPEATS] > bench/results/coldstart-cpu.md
# Environment: DEVICE=cuda gives every model a config.pbtxt with
# instance_group [ { kind: KIND_GPU gpus: [ 0 ] } ] (plans built for GPU 0);
# KILN=PATH uses a kiln binary built beforehand (the GPU machine has no Go);
# MODELS=DIR the models (default ../shared/models).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
models=${MODELS:-../shared/models}
device=${DEVICE:-cpu}
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
if [ -n "${KILN:-}" ]; then cp "$KILN" "$tmp/kiln"; else go build -o "$tmp/kiln" ./cmd/kiln; fi
port=$((20000 + RANDOM % 20000))

# ready_ms REPO CACHE: starts kiln serve, prints the milliseconds until ready, stops it
ready_ms() {
  local t0 t1
  t0=$(date +%s%N)
  "$tmp/kiln" serve --host 127.0.0.1 --http-port "$port" --grpc-port -1 --metrics-port -1 \
    --model-repository "$1" --plan-cache "$2" >"$tmp/serve.log" 2>&1 &
  pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/health/ready")" = 200 ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log" >&2; exit 1; }
    sleep 0.005
  done
  t1=$(date +%s%N)
  kill -TERM "$pid"; wait "$pid" || true; pid=""
  echo $(( (t1 - t0) / 1000000 ))
}
# build_ms REPO CACHE: kiln build --model-repository, in milliseconds
build_ms() {
  local t0 t1
  t0=$(date +%s%N)
  "$tmp/kiln" build --model-repository "$1" --plan-cache "$2" >"$tmp/build.log" 2>&1
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}
stats() { sort -n | awk '{a[NR]=$1} END {printf "%d (%d-%d)", a[int((NR+1)/2)], a[1], a[NR]}'; }

mkrepo() { # mkrepo DIR MODEL...
  for m in "${@:2}"; do
    mkdir -p "$1/$m/1" && cp "$models/$m/model.onnx" "$1/$m/1/"
    if [ "$device" = cuda ]; then
      echo 'instance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]' >"$1/$m/config.pbtxt"
    fi
  done
}
all=()
for d in "$models"/*/; do all+=("$(basename "$d")"); done

where="the CPU"
[ "$device" = cuda ] && where="the GPU ($(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1))"
echo "# kiln serve cold start on $where: cached plan vs building from ONNX"
echo
echo "Measured $(date -u +%Y-%m-%d) with plans for $device, on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the start (a machine shared with other work)."
echo "Command: \`DEVICE=$device bench/coldstart.sh $reps\`. Time from starting \`kiln serve --model-repository R --plan-cache C\`"
echo "to \`/v2/health/ready\` answering 200 (polled every 5 ms: the process's start, Go runtime, model loads,"
echo "warmup), median (min-max) of $reps starts, in ms. *From ONNX*: an empty plan cache every start, so every"
echo "model is built (optimization, every tactic timed: the timing cache is empty too, memory plan). *Cached plan*:"
echo "the cache filled once by \`kiln build --model-repository R --plan-cache C\` (the chart's build-plans"
echo "initContainer), timed in the last column (median of $reps builds on an empty cache)."
echo
echo "| repository | from ONNX (ms) | cached plan (ms) | speed-up | kiln build --model-repository (ms) |"
echo "| --- | --- | --- | --- | --- |"
for set in "${all[@]}" all; do
  repo="$tmp/repo-$set"
  if [ "$set" = all ]; then mkrepo "$repo" "${all[@]}"; else mkrepo "$repo" "$set"; fi
  onnx=(); cached=(); builds=()
  for _ in $(seq "$reps"); do
    rm -rf "$tmp/c1"; onnx+=("$(ready_ms "$repo" "$tmp/c1")")
    rm -rf "$tmp/c2"; builds+=("$(build_ms "$repo" "$tmp/c2")")
  done
  for _ in $(seq "$reps"); do cached+=("$(ready_ms "$repo" "$tmp/c2")"); done
  grep -q "engine built" "$tmp/serve.log" && { echo "cached start built a model" >&2; cat "$tmp/serve.log" >&2; exit 1; }
  o=$(printf '%s\n' "${onnx[@]}" | stats); c=$(printf '%s\n' "${cached[@]}" | stats)
  om=${o%% *}; cm=${c%% *}
  name=$set; [ "$set" = all ] && name="all ${#all[@]} together"
  echo "| $name | $o | $c | $(awk -v a="$om" -v b="$cm" 'BEGIN {printf "%.1fx", a / (b > 0 ? b : 1)}') | $(printf '%s\n' "${builds[@]}" | stats) |"
done
echo
echo "The cached-plan starts log \`engine cached plan\` for every model and no \`engine built\` (checked)."
