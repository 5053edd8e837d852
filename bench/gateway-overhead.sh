#!/usr/bin/env bash
# Gateway overhead on loopback: one kiln serve (tinycnn) and one kiln gateway
# in front of it, each a process; BenchmarkGatewayOverhead sends requests one
# at a time, alternately to the server and through the gateway, over HTTP
# (KServe v2 JSON) and gRPC, and reports p50 and p99 of both and the added
# microseconds. Prints the benchmark lines.
#
# usage: bench/gateway-overhead.sh [ITERATIONS [COUNT]]
#   KILN_BIN=path      a kiln built beforehand (else the test builds one with Go)
#   KILN_OLD_BIN=path  a second kiln (say of an earlier commit): its gateway runs
#                      in front of the same server and is measured in the same
#                      iterations; its numbers are printed as old-*
#   GATEWAY_TEST=path  a compiled gateway test binary: runs without Go (needs
#                      KILN_BIN too)
#   CPUS=LIST          run every process on these CPUs (taskset -c LIST)
# Without Go on the machine, build both beforehand where Go is:
#   go test -c -o DIR/gateway.test ./gateway && go build -o DIR/kiln ./cmd/kiln
#   GATEWAY_TEST=DIR/gateway.test KILN_BIN=DIR/kiln bench/gateway-overhead.sh 5000 3
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
count=${2:-3}
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
for v in KILN_BIN KILN_OLD_BIN GATEWAY_TEST; do
  if [ -n "${!v:-}" ]; then
    p=$(abs "${!v}")
    [ -x "$p" ] || { echo "gateway-overhead.sh: $v=${!v}: not an executable file" >&2; exit 2; }
    export "$v=$p"
  fi
done
if [ -n "${GATEWAY_TEST:-}" ] && [ -z "${KILN_BIN:-}" ]; then
  echo "gateway-overhead.sh: GATEWAY_TEST needs KILN_BIN (a kiln binary): the test would build one with Go" >&2
  exit 2
fi
pin=()
if [ -n "${CPUS:-}" ]; then pin=(taskset -c "$CPUS"); fi
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load average $(cut -d' ' -f1-3 /proc/loadavg)${CPUS:+, pinned to CPUs $CPUS}"
echo "# kiln: ${KILN_BIN:-built by the test}${KILN_OLD_BIN:+, old: $KILN_OLD_BIN}"
if [ -n "${GATEWAY_TEST:-}" ]; then
  (cd gateway && "${pin[@]}" "$GATEWAY_TEST" -test.run '^$' -test.bench BenchmarkGatewayOverhead -test.benchtime "${n}x" -test.count "$count")
else
  "${pin[@]}" go test ./gateway -run '^$' -bench BenchmarkGatewayOverhead -benchtime "${n}x" -count "$count"
fi 2>&1 | grep -E '^(Benchmark|goos|goarch|cpu|ok|FAIL|---|\s+\S+_test.go)'
