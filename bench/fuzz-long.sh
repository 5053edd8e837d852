#!/usr/bin/env bash
# The long fuzz run, independent of CI: builds each fuzz target's test
# binary (coverage-instrumented, as go test -fuzz builds it) and runs each
# for a number of executions or a time, printing how many executions each
# reached. Results go in bench/results/fuzz-long.md.
#
#   bench/fuzz-long.sh build [TARGET...]    build the binaries (needs Go)
#   bench/fuzz-long.sh run [TARGET...]      run them (no Go needed)
#   bench/fuzz-long.sh [TARGET...]          both
#
# TARGET is a fuzz target's name (FuzzHTTPHandler) or "all" for every fuzz
# target of the repository; the default is the whole-system targets of
# issue 9: FuzzHTTPHandler FuzzWebSocketStream FuzzGRPCService FuzzPlanRun
# FuzzBuildRun FuzzExternalData.
#
# Environment:
#   EXECS=1000000   executions per target (-test.fuzztime=${EXECS}x), unless
#   FUZZTIME=10m    a time per target is given instead
#   PARALLEL=N      fuzz workers per target (default: every CPU)
#   MINTIME=10s     the longest minimization of one new input
#
# The binaries (one per package, gzipped: about 30 MB for the default
# targets), their manifest, the fuzz caches and the logs are in
# bench/.fuzzbin/ (git-ignored through .git/info/exclude). Copy that folder
# with the repository to a machine without Go right after "build" and run
# "bench/fuzz-long.sh run" there: each binary runs in its package's folder,
# so that it reads (and writes a failing input to) the package's
# testdata/fuzz corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=bench/.fuzzbin
mkdir -p "$bin/cache" "$bin/logs"
if [ -d .git/info ] && ! grep -qx '/bench/.fuzzbin/' .git/info/exclude 2>/dev/null; then
  echo '/bench/.fuzzbin/' >>.git/info/exclude
fi

mode=both
case "${1:-}" in
build | run)
  mode=$1
  shift
  ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzHTTPHandler FuzzWebSocketStream FuzzGRPCService FuzzPlanRun FuzzBuildRun FuzzExternalData)

# manifest: one line per target, "package-folder target", from the sources
# when they are here (then the manifest is rewritten), else as built.
manifest=$bin/targets.txt
if command -v go >/dev/null 2>&1 || [ ! -f "$manifest" ]; then
  grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+\(' . |
    grep -v '^./bench/.fuzzbin/' |
    sed -E 's#^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#\1 \2#; s#^\./[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#. \1#' |
    sort -u >"$manifest.new"
  mv "$manifest.new" "$manifest"
fi
if [ "${targets[0]}" = all ]; then
  mapfile -t targets < <(awk '{print $2}' "$manifest")
fi
pkgof() { awk -v t="$1" '$2 == t {print $1; exit}' "$manifest"; }
pkgname() { if [ "$1" = . ]; then echo "kiln (root)"; else echo "./$1"; fi; }
# one binary per package, instrumented for its targets, kept gzipped (a
# third of the size, to carry to another machine) and unpacked into a
# temporary folder to be run
gzof() { echo "$bin/$(if [ "$1" = . ]; then echo kiln; else echo "$1" | tr / _; fi).test.gz"; }

if [ "$mode" != run ]; then
  command -v go >/dev/null 2>&1 || { echo "fuzz-long: building needs Go (run \"$0 run\" with built binaries)" >&2; exit 2; }
  declare -A want=()
  for t in "${targets[@]}"; do
    p=$(pkgof "$t")
    [ -n "$p" ] || { echo "fuzz-long: no fuzz target $t" >&2; exit 2; }
    want[$p]="${want[$p]:+${want[$p]}|}$t"
  done
  for p in "${!want[@]}"; do
    echo "== build ${want[$p]} ($(pkgname "$p"))"
    go test -c -fuzz "^(${want[$p]})\$" -ldflags='-s -w' -o "$bin/pkg.test" "./$p"
    gzip -9 -c "$bin/pkg.test" >"$(gzof "$p")"
    rm -f "$bin/pkg.test"
  done
  du -ch "$bin"/*.test.gz | tail -1 | sed 's/total$/in all: carry bench\/.fuzzbin (binaries, manifest) to run them elsewhere/'
fi
[ "$mode" != build ] || exit 0

unpacked=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fuzzbin.XXXXXX")
trap 'rm -rf "$unpacked"' EXIT
fuzztime="${EXECS:-1000000}x"
[ -z "${FUZZTIME:-}" ] || fuzztime=$FUZZTIME
parallel=${PARALLEL:-$(nproc 2>/dev/null || echo 4)}
summary=$bin/summary.md
{
  echo "| target | package | executions | time | new corpus entries | result |"
  echo "| --- | --- | ---: | ---: | ---: | --- |"
} >"$summary"
failed=0
for t in "${targets[@]}"; do
  p=$(pkgof "$t")
  gz=$root/$(gzof "$p")
  b=$unpacked/$(basename "${gz%.gz}")
  [ -f "$gz" ] || { echo "fuzz-long: $gz is missing: run \"$0 build $t\" first" >&2; exit 2; }
  if [ ! -x "$b" ]; then
    gzip -dc "$gz" >"$b" && chmod +x "$b"
  fi
  log=$root/$bin/logs/$t.log
  echo "== $t ($(pkgname "$p")): -test.fuzztime=$fuzztime, $parallel workers; log $bin/logs/$t.log"
  start=$(date +%s)
  set +e
  (cd "$p" && "$b" -test.run '^$' -test.fuzz "^$t\$" -test.fuzztime "$fuzztime" \
    -test.fuzzminimizetime "${MINTIME:-10s}" -test.fuzzcachedir "$root/$bin/cache/$t" \
    -test.parallel "$parallel" -test.timeout 0) >"$log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  last=$(grep -E '^fuzz: elapsed: .*execs: [0-9]+' "$log" | tail -1 || true)
  execs=$(echo "$last" | sed -nE 's/.*execs: ([0-9]+).*/\1/p')
  newc=$(echo "$last" | sed -nE 's/.*new interesting: ([0-9]+).*/\1/p')
  result=PASS
  if [ $rc -ne 0 ]; then
    result="FAIL (exit $rc)"
    failed=1
    grep -E -- '--- FAIL|Failing input written|fuzz_.*_test.go:[0-9]+:|panic:' "$log" | head -20 || true
  fi
  echo "$t: ${execs:-?} executions in ${secs}s, ${newc:-?} new corpus entries: $result"
  echo "| $t | $(pkgname "$p") | ${execs:-?} | ${secs} s | ${newc:-?} | $result |" >>"$summary"
done
echo
cat "$summary"
exit $failed
