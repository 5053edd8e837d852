#!/usr/bin/env bash
# Load sweep of the SLO batcher against the fixed-delay batcher (issue 14,
# item 7): one kiln serve with one model twice, "fixed" batched with a
# fixed max_queue_delay_microseconds and "slo" with the latency objective
# slo_p99_ms, the same max_batch_size; kiln perf in request-rate mode over
# the same rates against each, one after the other; a markdown page with
# the commands and both tables side by side.
# usage: bench/slo-batching.sh [RATES] [MEASUREMENT-INTERVAL]
#   defaults: RATES 250:2250:500 (START:END:STEP requests/s), interval 2s
#   MODEL (default tinycnn) is the model: tinycnn, the bundled example (its
#   engine cost per request is flat in the batch on a CPU), or mlp, an MLP
#   of LAYERS (default 4) Gemm+Relu layers of WIDTH x WIDTH (default 1024)
#   float32 weights written at run time by bench/slobatch (go run, or
#   GEN=path of a built one), whose cost per request falls with the batch.
#   Before the sweep, kiln run measures the engine's cost per batch size
#   c(b) (COST=0 leaves it out).
#   INSTANCES (default 1) is each model's CPU instance count.
#   DELAY_US (default 2000) is the fixed batcher's delay, SLO_MS (default 10)
#   the objective, MAXB (default 32) max_batch_size of both, PROTO (default
#   http) kiln perf's protocol.
#   output: bench/results/slo-batching.{md,fixed.csv,slo.csv} for tinycnn,
#   bench/results/slo-batching-mlp.{...} for mlp (OUT=DIR/NAME changes the prefix)
#   KILN=path uses a built kiln instead of building one (then neither Go nor
#   curl is needed: bench/quiet-cpu.sh runs it so); PORT=N serves on N, N+1,
#   N+2 (default 18200). MACHINE=TEXT describes the machine in the report
#   instead of "the machine is shared with other work while this runs";
#   SIM=0 leaves out the simulated sweep (it needs Go).
#   SERVE_WRAP and PERF_WRAP are commands put before kiln serve and kiln
#   perf, e.g. SERVE_WRAP="nice -n -19" PERF_WRAP="chrt -f 10": the load
#   generator at a real-time priority always gets the CPU it needs, and the
#   server under test has the rest (a saturated server at SCHED_FIFO would
#   starve a load generator at the same priority, and its window would never
#   end). Both are recorded in the report.
#   KILN_OLD=path (or OLD_REF=git-commit, built here with Go) adds the SLO
#   batcher of an older kiln: a second kiln serve of that binary (ports
#   PORT+3..PORT+5) with the same "slo" model as "slo-old", measured at each
#   rate after the other two, for old against new in the same run;
#   OLD_NAME=TEXT names it in the report (default: its path).
set -euo pipefail
cd "$(dirname "$0")/.."
# get URL prints the body of a successful HTTP GET: with curl, or with
# bash's /dev/tcp where there is no curl (a bare GPU image)
get() {
  if command -v curl >/dev/null; then
    curl -sf "$1"
    return
  fi
  local hostport=${1#http://} path resp
  path=/${hostport#*/}
  hostport=${hostport%%/*}
  { exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
  resp=$(cat <&3)
  exec 3<&-
  [[ ${resp%%$'\r'*} == *" 200 "* ]] || return 1
  printf '%s\n' "${resp#*$'\r\n\r\n'}"
}
rates=${1:-250:2250:500}
interval=${2:-2s}
delay=${DELAY_US:-2000}
slo=${SLO_MS:-10}
maxb=${MAXB:-32}
proto=${PROTO:-http}
model=${MODEL:-tinycnn}
case $model in
tinycnn) out=${OUT:-bench/results/slo-batching} ;;
mlp) out=${OUT:-bench/results/slo-batching-mlp} ;;
*) echo "MODEL=$model: want tinycnn or mlp" >&2; exit 2 ;;
esac
port=${PORT:-18200}
machine=${MACHINE:-the machine is shared with other work while this runs, so single rows are noisy}
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
kiln=${KILN:-$tmp/kiln}
[ -n "${KILN:-}" ] || go build -o "$kiln" ./cmd/kiln
old=${KILN_OLD:-}
if [ -z "$old" ] && [ -n "${OLD_REF:-}" ]; then
  mkdir -p "$tmp/src-old"
  git archive "$OLD_REF" | tar -x -C "$tmp/src-old"
  (cd "$tmp/src-old" && go build -o "$tmp/kiln-old" ./cmd/kiln)
  old=$tmp/kiln-old
fi
oldname=${OLD_NAME:-$old}
[ -n "${OLD_REF:-}" ] && oldname="commit $(git rev-parse --short "$OLD_REF")"
models=(fixed slo)
[ -n "$old" ] && models+=(slo-old)
# the model file, its input and the shape of one request's input
if [ "$model" = mlp ]; then
  width=${WIDTH:-1024}
  layers=${LAYERS:-4}
  if [ -n "${GEN:-}" ]; then
    "$GEN" -o "$tmp/mlp" -width "$width" -layers "$layers"
  else
    go run ./bench/slobatch -o "$tmp/mlp" -width "$width" -layers "$layers"
  fi
  src=$tmp/mlp/model.onnx input=x inshape=$width
  desc="an MLP of $layers Gemm+Relu layers of ${width}x$width float32 weights (bench/slobatch)"
  gencmd="go run ./bench/slobatch -o DIR -width $width -layers $layers"
else
  src=examples/tinycnn/model.onnx input=image inshape=3x32x32
  desc="the bundled tinycnn"
  gencmd=""
fi
read -ra swrap <<<"${SERVE_WRAP:-}"
read -ra pwrap <<<"${PERF_WRAP:-}"
# c(b): the engine alone, kiln run at each batch size, twice over
cost=""
if [ "${COST:-1}" != 0 ]; then
  for pass in 1 2; do
    for b in 1 2 4 8 16 32; do
      [ "$b" -le "$maxb" ] || continue
      p50=$("${swrap[@]}" "$kiln" run --shape "$input:${b}x$inshape" --iterations "${COST_ITER:-300}" "$src" 2>&1 | sed -n 's/.* p50 \([0-9.]*\) .*/\1/p')
      cost+="$pass $b $p50"$'\n'
    done
  done
fi
repo=$tmp/repo
for m in fixed slo; do
  mkdir -p "$repo/$m/1"
  cp "$src" "$repo/$m/1/model.onnx"
done
# INSTANCES (default 1) CPU instances of each model: kiln serve's default
# for a config without instance_group became Triton's (2 on the CPU) in
# 7a15f10; the sweeps of issue 14 ran one
inst=${INSTANCES:-1}
cat >"$repo/fixed/config.pbtxt" <<CFG
max_batch_size: $maxb
instance_group [ { count: $inst kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: $delay }
CFG
cat >"$repo/slo/config.pbtxt" <<CFG
max_batch_size: $maxb
instance_group [ { count: $inst kind: KIND_CPU } ]
parameters { key: "slo_p99_ms" value: { string_value: "$slo" } }
CFG
if [ -n "$old" ]; then
  mkdir -p "$tmp/repo-old/slo-old/1"
  cp "$src" "$tmp/repo-old/slo-old/1/model.onnx"
  cp "$repo/slo/config.pbtxt" "$tmp/repo-old/slo-old/config.pbtxt"
fi
"${swrap[@]}" "$kiln" serve --host 127.0.0.1 --http-port "$port" --grpc-port $((port + 1)) --metrics-port $((port + 2)) \
  --model-repository "$repo" --plan-cache "$tmp/plans" >"$tmp/serve.log" 2>&1 &
serve=$!
serveold=""
if [ -n "$old" ]; then
  "${swrap[@]}" "$old" serve --host 127.0.0.1 --http-port $((port + 3)) --grpc-port $((port + 4)) --metrics-port $((port + 5)) \
    --model-repository "$tmp/repo-old" --plan-cache "$tmp/plans-old" >"$tmp/serve-old.log" 2>&1 &
  serveold=$!
fi
trap 'kill $serve $serveold 2>/dev/null; wait $serve $serveold 2>/dev/null; rm -rf "$tmp"' EXIT
ready() { # ready PORT LOG
  for _ in $(seq 600); do
    get "http://127.0.0.1:$1/v2/health/ready" >/dev/null && return
    sleep 0.1
  done
  get "http://127.0.0.1:$1/v2/health/ready" >/dev/null || { cat "$2"; echo "kiln serve did not get ready" >&2; exit 1; }
}
ready "$port" "$tmp/serve.log"
[ -z "$old" ] || ready $((port + 3)) "$tmp/serve-old.log"
# hport M, url M: the HTTP port of model M's server, the address kiln perf uses
hport() { if [ "$1" = slo-old ]; then echo $((port + 3)); else echo "$port"; fi; }
url() {
  local p
  p=$(hport "$1")
  [ "$proto" = grpc ] && p=$((p + 1))
  echo "127.0.0.1:$p"
}
url=$(url fixed)
# the two models take turns at each rate, so that a change in the machine's
# load weighs on both alike
IFS=: read -r r0 r1 rstep <<<"$rates"
# counts M prints model M's inference and execution counts so far, and the
# CPU time (clock ticks, user and system) of the kiln serve that serves it
counts() {
  local st pid=$serve
  [ "$1" = slo-old ] && pid=$serveold
  st=$(get "http://127.0.0.1:$(hport "$1")/v2/models/$1/stats")
  echo "$(grep -o '"inference_count":[0-9]*' <<<"$st" | head -1 | cut -d: -f2) $(grep -o '"execution_count":[0-9]*' <<<"$st" | head -1 | cut -d: -f2)" \
    "$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)"
}
tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
for m in "${models[@]}"; do : >"$tmp/$m.txt"; : >"$tmp/$m.batch"; : >"$tmp/$m.cpu"; done
for ((r = r0; r <= r1; r += rstep)); do
  for m in "${models[@]}"; do
    read -r inf0 exe0 cpu0 <<<"$(counts "$m")"
    cmd=(perf -m "$m" -u "$(url "$m")" -i "$proto" --request-rate-range "$r:$r:1" --request-distribution poisson --max-threads 64
      --measurement-interval "$interval" --max-trials 5 -f "$tmp/$m.$r.csv")
    echo "+ kiln ${cmd[*]}" >&2
    "${pwrap[@]}" "$kiln" "${cmd[@]}" | tee -a "$tmp/$m.txt"
    read -r inf1 exe1 cpu1 <<<"$(counts "$m")"
    awk -v a=$((inf1 - inf0)) -v b=$((exe1 - exe0)) 'BEGIN { printf "%.2f\n", b ? a / b : 0 }' >>"$tmp/$m.batch"
    awk -v a=$((inf1 - inf0)) -v c=$((cpu1 - cpu0)) -v h="$tck" 'BEGIN { printf "%.0f\n", a ? c / h / a * 1e6 : 0 }' >>"$tmp/$m.cpu"
    if [ ! -f "$out.$m.csv" ] || [ "$r" = "$r0" ]; then head -1 "$tmp/$m.$r.csv" >"$out.$m.csv"; fi
    tail -n +2 "$tmp/$m.$r.csv" >>"$out.$m.csv"
  done
done
met=$(get "http://127.0.0.1:$((port + 2))/metrics" | grep '^kiln_inference_slo_' || true)
[ -z "$old" ] || met+=$'\n'$(get "http://127.0.0.1:$((port + 5))/metrics" | grep '^kiln_inference_slo_' || true)
batches=""
for m in "${models[@]}"; do
  st=$(get "http://127.0.0.1:$(hport "$m")/v2/models/$m/stats")
  inf=$(grep -o '"inference_count":[0-9]*' <<<"$st" | head -1 | cut -d: -f2)
  exe=$(grep -o '"execution_count":[0-9]*' <<<"$st" | head -1 | cut -d: -f2)
  batches+="$m: $inf inferences in $exe executions, $(awk -v a="$inf" -v b="$exe" 'BEGIN { printf "%.2f", b ? a / b : 0 }') a batch on average"$'\n'
done
{
  echo "# SLO-aware batching against a fixed queue delay: $model, $proto, request rates $rates"
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M') UTC on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end: $machine."
  echo "kiln serve and kiln perf on the same machine, over loopback."
  echo
  echo "One \`kiln serve\` with $desc twice, both \`max_batch_size: $maxb\`:"
  echo
  echo "- \`fixed\`: \`dynamic_batching { max_queue_delay_microseconds: $delay }\`"
  echo "- \`slo\`: \`parameters { key: \"slo_p99_ms\" value: { string_value: \"$slo\" } }\` (the SLO batcher)"
  [ -z "$old" ] || echo "- \`slo-old\`: the same \`slo\` model served by a second \`kiln serve\`, the older kiln ($oldname)"
  echo
  echo "Command (builds kiln, writes the repository, starts \`kiln serve\`, runs kiln perf against each model in turn):"
  echo
  oldenv=""
  [ -z "$old" ] || oldenv="${OLD_REF:+OLD_REF=$OLD_REF }${KILN_OLD:+KILN_OLD=kiln-old }"
  modelenv=""
  [ "$model" = tinycnn ] || modelenv="MODEL=$model WIDTH=$width LAYERS=$layers "
  wrapenv=""
  [ -z "${SERVE_WRAP:-}" ] || wrapenv+="SERVE_WRAP=\"$SERVE_WRAP\" "
  [ -z "${PERF_WRAP:-}" ] || wrapenv+="PERF_WRAP=\"$PERF_WRAP\" "
  echo "    ${wrapenv}${modelenv}${oldenv}DELAY_US=$delay SLO_MS=$slo MAXB=$maxb PROTO=$proto bench/slo-batching.sh $rates $interval"
  echo
  [ -z "$gencmd" ] || { echo "The model is written by \`$gencmd\` at the start."; echo; }
  if [ -n "$cost" ]; then
    echo "The engine's cost per batch size c(b) before the sweep (\`kiln run --shape $input:Bx$inshape --iterations ${COST_ITER:-300} MODEL.onnx\`, p50, two passes):"
    echo
    echo "| batch b | c(b) ms, pass 1 | c(b) ms, pass 2 | c(b)/b us (the lower pass) |"
    echo "| ---: | ---: | ---: | ---: |"
    awk '$1 == 1 { p1[$2] = $3; order[++n] = $2 } $1 == 2 { p2[$2] = $3 }
      END { for (i = 1; i <= n; i++) { b = order[i]; lo = p1[b]; if (p2[b] != "" && p2[b] < lo) lo = p2[b]
        printf "| %d | %s | %s | %.0f |\n", b, p1[b], p2[b], lo * 1000 / b } }' <<<"$cost"
    echo
  fi
  echo "which runs, for each rate R of the range, the models in turn (${models[*]}):"
  echo
  echo "    kiln perf -m MODEL -u $url -i $proto --request-rate-range R:R:1 --request-distribution poisson --max-threads 64 --measurement-interval $interval --max-trials 5"
  echo
  echo "Side by side (latencies in ms, from kiln perf):"
  echo
  if [ -z "$old" ]; then
    echo "| rate req/s | fixed infer/s | fixed p50 | fixed p99 | slo infer/s | slo p50 | slo p99 |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    paste -d, <(tail -n +2 "$out.fixed.csv") <(tail -n +2 "$out.slo.csv") |
      awk -F, '{ printf "| %s | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f |\n", $1, $2, $8/1000, $11/1000, $17, $23/1000, $26/1000 }'
  else
    echo "| rate req/s | fixed infer/s | fixed p50 | fixed p99 | slo infer/s | slo p50 | slo p99 | slo-old infer/s | slo-old p50 | slo-old p99 |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    paste -d, <(tail -n +2 "$out.fixed.csv") <(tail -n +2 "$out.slo.csv") <(tail -n +2 "$out.slo-old.csv") |
      awk -F, '{ printf "| %s | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f |\n", $1, $2, $8/1000, $11/1000, $17, $23/1000, $26/1000, $32, $38/1000, $41/1000 }'
  fi
  echo
  echo "Mean batch at each rate (inferences per execution in the server's statistics, over kiln perf's windows at that rate):"
  echo
  hdr="| rate req/s |"
  sep="| ---: |"
  for m in "${models[@]}"; do hdr+=" $m |"; sep+=" ---: |"; done
  echo "$hdr"
  echo "$sep"
  bfiles=()
  for m in "${models[@]}"; do bfiles+=("$tmp/$m.batch"); done
  paste -d' ' <(for ((r = r0; r <= r1; r += rstep)); do echo "$r"; done) "${bfiles[@]}" |
    awk '{ printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n" }'
  echo
  echo "kiln serve's CPU time (user and system, from /proc) per request at each rate, in microseconds: what"
  echo "batching saves of the server's work (the two models of one server take turns, so each model's run has the"
  echo "process to itself):"
  echo
  echo "$hdr"
  echo "$sep"
  cfiles=()
  for m in "${models[@]}"; do cfiles+=("$tmp/$m.cpu"); done
  paste -d' ' <(for ((r = r0; r <= r1; r += rstep)); do echo "$r"; done) "${cfiles[@]}" |
    awk '{ printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n" }'
  echo
  echo "Batch sizes over the whole run (the server's statistics):"
  echo
  echo '```'
  printf '%s' "$batches"
  echo '```'
  echo
  echo "The SLO models' counters at the end (all rates together):"
  echo
  echo '```'
  echo "$met"
  echo '```'
  echo
  echo "Raw kiln perf tables:"
  echo
  echo '```'
  for m in "${models[@]}"; do
    [ "$m" = fixed ] || echo
    cat "$tmp/$m.txt"
  done
  echo '```'
  echo
  csvs=""
  for m in "${models[@]}"; do csvs+="${csvs:+, }[\`$(basename "$out").$m.csv\`]($(basename "$out").$m.csv)"; done
  echo "CSV: $csvs."
  if [ "${SIM:-1}" != 0 ] && command -v go >/dev/null && [ "$model" = mlp ]; then
    echo
    echo "## The same policies on the MLP's measured cost curve (virtual time)"
    echo
    echo "The scheduler's own batching decisions (its \`pick\`) driven on virtual time by 10,000 Poisson arrivals"
    echo "per row, the engine's cost per batch size the MLP's c(b) on this machine (kiln run: 0.313, 0.349, 0.423,"
    echo "0.651, 2.028 and 2.598 ms at batch 1, 2, 4, 8, 16 and 32, interpolated between, ±10% seeded noise), one"
    echo "instance, \`max_batch_size: 32\`, the SLO batcher's objective 5 ms (the P99 of the fixed 2 ms delay at 80%"
    echo "load), rates from 2% to 105% of the capacity at batch 32: the engine alone, without the request path that"
    echo "shares the CPU with it in the sweep above. Produced by"
    echo
    echo "    go test ./serve/scheduler -run TestSLOBatcherMLPSweep -v"
    echo
    echo "which fails unless, at up to 5% load, no request that finds the instance idle waits; the mean batch never"
    echo "falls as the load rises; the P99 is within the objective up to 80% load; the SLO batcher's P99 is at most"
    echo "the better fixed delay's up to 80% load (within 10% at 90%); and its throughput within 1% of it everywhere."
    echo
    go test -count=1 ./serve/scheduler -run TestSLOBatcherMLPSweep -v 2>&1 | grep '^        |' | sed 's/^        //'
  elif [ "${SIM:-1}" != 0 ] && command -v go >/dev/null; then
    echo
    echo "## The same policies on simulated engines (virtual time)"
    echo
    echo "The scheduler's own batching decisions (its \`pick\`) driven on virtual time by 20,000 Poisson arrivals"
    echo "per row, engines of known cost with ±10% seeded noise, \`max_batch_size: 32\`, rates from 5% to 90% of"
    echo "the engine's capacity at batch 32: deterministic, and free of the machine's load. Produced by"
    echo
    echo "    go test ./serve/scheduler -run TestSLOBatcherSimulatedSweep -v"
    echo
    echo "which fails if the SLO batcher's P99 is more than 15% above the better of the two fixed delays at any"
    echo "rate, or its throughput 1% below."
    echo
    go test -count=1 ./serve/scheduler -run TestSLOBatcherSimulatedSweep -v 2>&1 | grep '^        |' | sed 's/^        //'
    echo
    echo "### Load sweep past saturation"
    echo
    echo "The SLO batcher (objective 10 ms) against the two fixed delays from 2% to 105% of the engine's capacity at"
    echo "batch 32, 10,000 arrivals per row; \"held\" counts the requests that found an instance idle and the queue"
    echo "empty and still did not start at once. The middle engine is tinycnn's cost on this machine's CPU (kiln run:"
    echo "0.044 ms at batch 1, 1.34 ms at 32: the cost per request hardly falls with the batch). Produced by"
    echo
    echo "    go test ./serve/scheduler -run TestSLOBatcherLoadSweep -v"
    echo
    echo "which fails if a request is held at up to 5% load, if the mean batch falls as the load rises, if batches"
    echo "of the mean size cannot serve the arrivals, if the SLO batcher misses the objective where a fixed delay"
    echo "meets it, or if its throughput is 1% below the better fixed delay's."
    echo
    go test -count=1 ./serve/scheduler -run TestSLOBatcherLoadSweep -v 2>&1 | grep '^        |' | sed 's/^        //'
  fi
} >"$out.md"
echo "wrote $out.md" >&2
