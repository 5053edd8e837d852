#!/usr/bin/env bash
# Measures what kiln's request path costs (issue 14, item 6): the bundled
# tinycnn served by kiln serve over HTTP JSON and gRPC against bare servers
# (net/http + encoding/json, grpc-go) and the engine alone, all alternating
# in each round, and writes bench/results/request-path.md.
# usage: bench/reqpath.sh [ROUNDS] [WINDOW]      defaults: 7 rounds, windows of 2s
#   OUT=FILE writes elsewhere; KILN=path uses a built kiln instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
window=${2:-2s}
out=${OUT:-bench/results/request-path.md}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
kiln=${KILN:-$tmp/kiln}
[ -n "${KILN:-}" ] || go build -o "$kiln" ./cmd/kiln
go build -o "$tmp/reqpath" ./bench/reqpath
args=(-rounds "$rounds" -duration "$window" -targets engine,bare-http,kiln-http,bare-grpc,kiln-grpc,bare-grpc-engine)
echo "+ reqpath -kiln KILN ${args[*]}" >&2
"$tmp/reqpath" -kiln "$kiln" "${args[@]}" >"$tmp/report.md"
{
  echo "# Request path: kiln serve against bare servers and the engine alone (issue 14, item 6)"
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M') UTC at commit $(git rev-parse --short HEAD) on $(nproc) cores"
  echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), a machine shared with other busy processes:"
  echo "every server, the engine and the load driver share its cores, over loopback. Command:"
  echo
  echo "    bench/reqpath.sh $rounds $window"
  echo
  echo "which builds kiln and bench/reqpath and runs"
  echo
  echo "    reqpath -kiln KILN ${args[*]}"
  echo
  cat "$tmp/report.md"
} >"$out"
cat "$out"
