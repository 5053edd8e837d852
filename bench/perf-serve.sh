#!/usr/bin/env bash
# Starts kiln serve with the bundled model (tinycnn) on loopback, runs kiln
# perf against it over a concurrency range, and writes the CSV, JSON and
# plot next to a markdown page with the command and the table.
# usage: bench/perf-serve.sh [-i http|grpc|ws] [RANGE] [MEASUREMENT-INTERVAL]
#   defaults: -i grpc, RANGE 1:8:1, interval 2s
#   output: bench/results/perf-tinycnn.{md,csv,json,svg} (OUT=DIR/NAME changes the prefix)
#   KILN=path uses a built kiln instead of building one; PORT=N serves on N, N+1, N+2 (default 18100).
set -euo pipefail
cd "$(dirname "$0")/.."
proto=grpc
if [ "${1:-}" = "-i" ]; then proto=$2; shift 2; fi
range=${1:-1:8:1}
interval=${2:-2s}
out=${OUT:-bench/results/perf-tinycnn}
port=${PORT:-18100}
tmp=$(mktemp -d)
kiln=${KILN:-$tmp/kiln}
[ -n "${KILN:-}" ] || go build -o "$kiln" ./cmd/kiln
"$kiln" serve --host 127.0.0.1 --http-port "$port" --grpc-port $((port + 1)) --metrics-port $((port + 2)) \
  --plan-cache "$tmp/plans" >"$tmp/serve.log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null || { cat "$tmp/serve.log"; echo "kiln serve did not get ready" >&2; exit 1; }
url=127.0.0.1:$port
[ "$proto" = grpc ] && url=127.0.0.1:$((port + 1))
cmd=(perf -m tinycnn -u "$url" -i "$proto" --concurrency-range "$range" --measurement-interval "$interval"
  -f "$out.csv" --json "$out.json" --plot "$out.svg")
echo "+ kiln ${cmd[*]}" >&2
"$kiln" "${cmd[@]}" | tee "$tmp/table.txt"
{
  echo "# kiln perf: tinycnn served by kiln serve, $proto, concurrency $range"
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M') UTC on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; kiln serve and kiln perf on the same machine, over loopback."
  echo "Command (builds kiln, starts \`kiln serve\` with the bundled model, runs kiln perf):"
  echo
  echo "    bench/perf-serve.sh -i $proto $range $interval"
  echo
  echo "which runs"
  echo
  echo "    kiln ${cmd[*]}"
  echo
  echo "Each concurrency repeats windows of $interval until throughput and p95 of 3 consecutive windows are within"
  echo "10% of their average (at most 10 windows); the figures are over those 3 windows. \"server infer/s\" and the"
  echo "queue/input/infer/output columns come from the server's own statistics (\`ModelStatistics\`) over the"
  echo "same windows; the microsecond columns are the server's time per request. Rows marked \"stable no\" had no"
  echo "3 agreeing windows within 10 (the machine is shared with other work: see the load average)."
  echo
  awk -F, 'NR > 1 && $13 > 0 { d = ($2 - $13) / $13; if (d < 0) d = -d; if (d > m) m = d; n++ }
    END { printf "kiln perf'"'"'s throughput against the server'"'"'s own statistics over the same windows: at most %.2f%% apart over %d steps.\n", 100 * m, n }' "$out.csv"
  echo
  echo '```'
  cat "$tmp/table.txt"
  echo '```'
  echo
  echo "CSV: [\`$(basename "$out").csv\`]($(basename "$out").csv), JSON: [\`$(basename "$out").json\`]($(basename "$out").json)."
  echo
  echo "![latency percentiles against throughput]($(basename "$out").svg)"
} >"$out.md"
echo "wrote $out.md, $out.csv, $out.json, $out.svg" >&2
