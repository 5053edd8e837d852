#!/usr/bin/env bash
# Times kiln build of every model of ../shared/models twice with one fresh
# tactic timing cache: the first build measures every tactic, the second
# finds them in the cache. Writes a markdown table with the ratio.
# usage: bench/build-cache.sh [REPEATS] > bench/results/build-cache.md
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
models=../shared/models
go build -o /tmp/kiln-bench ./cmd/kiln
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# secs CMD... prints the wall seconds of CMD and its tactics stage's seconds.
secs() {
  local t0 t1
  t0=$(date +%s%N); "$@" >"$tmp/out" 2>&1; t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" '$1 == "tactics" && $3 == "ms" {t = $2/1000} END {printf "%.4f %.4f\n", (b-a)/1e9, t}' "$tmp/out"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "# kiln build: first build vs second build with the timing cache"
echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))."
echo "Command: \`bench/build-cache.sh $reps\`. Each repeat starts from an empty timing cache, builds once"
echo "(every tactic timed at the profile's opt shape, batch 1) and again with the cache the first build wrote."
echo "Wall time of the whole \`kiln build\` process, median of $reps repeats."
echo
# Profiles whose opt shape is a serving batch of 8 (the second table).
declare -A opt8=(
  [resnet_mini]="--profile input:1x3x224x224,8x3x224x224,32x3x224x224"
  [mobilenet_v2]="--profile input:1x3x224x224,8x3x224x224,32x3x224x224"
  [squeezenet1_1]="--profile input:1x3x224x224,8x3x224x224,32x3x224x224"
  [bert_mini]="--profile input_ids:1x16,8x128,32x512 --profile attention_mask:1x16,8x128,32x512"
  [yolo_tiny]="--profile images:1x3x320x320,8x3x320x320,16x3x320x320"
)
table() {
  echo "| model | first build s | second build s (cached) | speed-up | tactics stage first s | tactics stage cached s |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for m in resnet_mini mobilenet_v2 squeezenet1_1 bert_mini yolo_tiny; do
  local extra=()
  [ "$1" = opt8 ] && read -r -a extra <<<"${opt8[$m]}"
  first=(); second=()
  for r in $(seq "$reps"); do
    rm -f "$tmp/cache.json"
    first+=("$(secs /tmp/kiln-bench build "$models/$m/model.onnx" -o "$tmp/m.plan" --timing-cache "$tmp/cache.json" "${extra[@]}")")
    second+=("$(secs /tmp/kiln-bench build "$models/$m/model.onnx" -o "$tmp/m.plan" --timing-cache "$tmp/cache.json" "${extra[@]}")")
  done
  f=$(printf '%s\n' "${first[@]}" | cut -d' ' -f1 | median)
  s=$(printf '%s\n' "${second[@]}" | cut -d' ' -f1 | median)
  ft=$(printf '%s\n' "${first[@]}" | cut -d' ' -f2 | median)
  st=$(printf '%s\n' "${second[@]}" | cut -d' ' -f2 | median)
  printf '| %s | %.2f | %.2f | %.1fx | %.3f | %.3f |\n' "$m" "$f" "$s" "$(awk -v a="$f" -v b="$s" 'BEGIN {print a/b}')" "$ft" "$st"
  done
}
echo "## Default profile: opt batch 1 (seq 128, images 128x128 for the symbolic dims)"
echo
table opt1
echo
echo "## Serving profile: opt batch 8 (bert_mini seq 128, yolo_tiny 320x320)"
echo
table opt8
