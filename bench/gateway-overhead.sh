#!/usr/bin/env bash
# Gateway overhead on loopback: one kiln serve (tinycnn) and one kiln gateway
# in front of it, each a process; BenchmarkGatewayOverhead sends requests one
# at a time, alternately to the server and through the gateway, over HTTP
# (KServe v2 JSON) and gRPC, and reports p50 and p99 of both and the added
# microseconds. Prints the benchmark lines.
# usage: bench/gateway-overhead.sh [ITERATIONS [COUNT]]
#   KILN_BIN=path/to/kiln uses a kiln built beforehand; GATEWAY_TEST=path to a
#   compiled gateway test binary (go test -c ./gateway) runs without Go.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
count=${2:-3}
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${GATEWAY_TEST:-}" ]; then
  (cd gateway && "$GATEWAY_TEST" -test.run '^$' -test.bench BenchmarkGatewayOverhead -test.benchtime "${n}x" -test.count "$count")
else
  go test ./gateway -run '^$' -bench BenchmarkGatewayOverhead -benchtime "${n}x" -count "$count"
fi 2>&1 | grep -E '^(Benchmark|goos|goarch|cpu|ok|FAIL|---)'
