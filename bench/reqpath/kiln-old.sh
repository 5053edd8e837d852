#!/usr/bin/env bash
# Builds DIR/kiln-old for bench/quiet-cpu.sh's old/new run: kiln at HEAD
# with only the request-path work of 2026-12-07 (commits 8a49ce6, 1988540,
# d7a0bb6, 0930f10, 53f374b: serve/scheduler, serve, serve/grpcapi, api)
# taken out, so that kiln and kiln-old differ by that work alone (other
# work on the engine between those commits stays in both).
# usage: bench/reqpath/kiln-old.sh DIR      (after bench/quiet-cpu.sh build DIR)
#   PACK=xz (default), gzip or none, as bench/quiet-cpu.sh build.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:?usage: bench/reqpath/kiln-old.sh DIR}
mkdir -p "$dir"
adir=$(cd "$dir" && pwd)
before=7f633b3 after=53f374b
files=(serve/scheduler/scheduler.go serve/server.go serve/shapecheck.go serve/grpcapi/decode.go
  serve/grpcapi/wirescan.go serve/grpcapi/shm.go serve/grpcapi/inflight.go api/convert.go)
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git archive HEAD | tar -x -C "$src"
git diff "$after" "$before" -- "${files[@]}" >"$src/revert.patch"
(cd "$src" && git apply revert.patch)
(cd "$src" && CGO_ENABLED=0 go build -trimpath "-ldflags=-s -w" -o "$adir/kiln-old" ./cmd/kiln)
echo "$(git rev-parse --short HEAD) without $before..$after's request-path files" >"$adir/COMMIT-OLD"
case ${PACK:-xz} in
xz) xz -T0 -6 -f "$adir/kiln-old" ;;
gzip) gzip -9 -f "$adir/kiln-old" ;;
none) ;;
esac
ls -l "$adir"
