#!/usr/bin/env bash
# Measures what kiln's request path costs (issue 14, item 6): tinycnn served
# by kiln serve over HTTP JSON and gRPC against bare servers (net/http +
# encoding/json, grpc-go, grpc-go running the engine in its handler) and the
# engine alone, all alternating in each round; twice: the bundled model as
# the README's first command serves it, and a repository's tinycnn (built by
# kiln's builder, dynamic batching without delay). Writes
# bench/results/request-path.md.
# usage: bench/reqpath.sh [ROUNDS] [WINDOW]      defaults: 7 rounds, windows of 2s
#   OUT=FILE writes elsewhere; KILN=path uses a built kiln instead of building
#   one, REQPATH=path a built bench/reqpath (with both, Go is not needed:
#   bench/quiet-cpu.sh runs it so on a machine without Go). MACHINE=TEXT
#   describes the machine in the report instead of "a machine shared with
#   other busy processes", COMMAND=TEXT the command that produced it.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
window=${2:-2s}
out=${OUT:-bench/results/request-path.md}
# the hand-written sections (from "## Before and after" on) are kept
keep=""
[ -f "$out" ] && keep=$(sed -n '/^## Before and after/,$p' "$out")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
kiln=${KILN:-$tmp/kiln}
[ -n "${KILN:-}" ] || go build -o "$kiln" ./cmd/kiln
reqpath=${REQPATH:-$tmp/reqpath}
[ -n "${REQPATH:-}" ] || go build -o "$reqpath" ./bench/reqpath
machine=${MACHINE:-a machine shared with other busy processes}
command=${COMMAND:-bench/reqpath.sh $rounds $window}
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
mkdir -p "$tmp/repo/tinycnn/1"
cp examples/tinycnn/model.onnx "$tmp/repo/tinycnn/1/"
printf 'max_batch_size: 8\ndynamic_batching { }\n' >"$tmp/repo/tinycnn/config.pbtxt"
targets=engine,bare-http,kiln-http,bare-grpc,kiln-grpc,bare-grpc-engine
bundled=(-rounds "$rounds" -duration "$window" -targets "$targets")
repo=(-rounds "$rounds" -duration "$window" -targets "$targets" -engine built -serve-args "--model-repository REPO")
echo "+ reqpath -kiln KILN ${bundled[*]}" >&2
"$reqpath" -kiln "$kiln" "${bundled[@]}" >"$tmp/bundled.md"
echo "+ reqpath -kiln KILN ${repo[*]}" >&2
"$reqpath" -kiln "$kiln" "${repo[@]/REPO/$tmp/repo}" | sed "s#$tmp/repo#REPO#g" >"$tmp/repo.md"
{
  echo "# Request path: kiln serve against bare servers and the engine alone (issue 14, item 6)"
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M') UTC at commit $commit on $(nproc) cores"
  echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $machine:"
  echo "every server, the engine and the load driver share its cores, over loopback. Command:"
  echo
  echo "    $command"
  echo
  echo "which runs kiln and bench/reqpath (the bare servers and the load driver, in Go) in the two"
  echo "configurations below one after the other."
  echo
  echo "## The bundled tinycnn, as \`kiln serve\` serves it"
  echo
  echo "    reqpath -kiln KILN ${bundled[*]}"
  echo
  cat "$tmp/bundled.md"
  echo
  echo "## A repository's tinycnn: built by kiln's builder, dynamic batching without delay"
  echo
  echo "REPO/tinycnn/1/model.onnx is examples/tinycnn/model.onnx; REPO/tinycnn/config.pbtxt:"
  echo
  sed 's/^/    /' "$tmp/repo/tinycnn/config.pbtxt"
  echo
  echo "    reqpath -kiln KILN ${repo[*]}"
  echo
  cat "$tmp/repo.md"
  if [ -n "$keep" ]; then
    echo
    printf '%s\n' "$keep"
  fi
} >"$out"
cat "$out"
