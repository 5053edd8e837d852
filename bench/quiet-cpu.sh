#!/usr/bin/env bash
# Runs the CPU request-path benchmarks on a quiet machine that has no Go,
# from prebuilt binaries, every process (servers and load drivers alike)
# pinned to the same few cores with taskset:
#   - bench/reqpath.sh: kiln serve against bare net/http and grpc-go servers
#     and the engine alone (issue 14, item 6) -> OUT/request-path.md
#   - with a kiln-old binary: kiln serve's HTTP and gRPC paths, old and new
#     alternating in each round -> OUT/request-path-old-new.md
#   - bench/slo-batching.sh: the SLO batcher against a fixed queue delay
#     (issue 14, item 7), with kiln-old its SLO batcher too ->
#     OUT/slo-batching.{md,fixed.csv,slo.csv[,slo-old.csv]}
#   - bench/gateway-overhead.sh: what kiln gateway adds to a request's
#     latency (issue 12) -> OUT/gateway-overhead.txt
# and OUT/machine.txt (the cores, the CPU, the load before and after) and
# OUT/quiet-cpu.log (what the benchmarks printed on the way).
#
# 1. On a machine with Go, in a checkout (CGO_ENABLED=0, so the binaries
#    run on any linux/amd64 machine):
#
#      bench/quiet-cpu.sh build DIR [OLD_REF]
#
#    builds DIR/kiln, DIR/reqpath, DIR/gateway.test and DIR/COMMIT (the
#    checkout's commit) and, with OLD_REF (a git commit, say the one before
#    a change), DIR/kiln-old from that commit; stripped and compressed with
#    xz (about 45 MB in all with kiln-old; PACK=gzip compresses with gzip,
#    PACK=none not at all). A folder named .gpubin-* is git-ignored.
#
# 2. On the quiet machine, in a plain checkout of the same commit (it needs
#    bash, coreutils, taskset and xz or gzip for packed binaries; no Go, no
#    curl):
#
#      OUT=RESULTS CORES=4 bench/quiet-cpu.sh DIR
#
#    or, without DIR, KILN=, REQPATH=, GATEWAY_TEST= (and KILN_OLD=) name
#    the binaries one by one.
#
# Environment: CORES, how many cores (the first N: 0..N-1) or which (a
#   taskset list such as 4-7), default 2; OUT, the results' folder
#   (default bench/results/quiet); ONLY, a comma-separated subset of
#   reqpath,oldnew,slo,gateway (default: all; oldnew only with kiln-old);
#   ROUNDS (5) and WINDOW (1s) for bench/reqpath.sh and the old/new run;
#   RATE (400) the old/new run's fixed rate; RATES (250:2250:500) and
#   INTERVAL (2s) for bench/slo-batching.sh; ITER (3000) and COUNT (3) for
#   bench/gateway-overhead.sh. With the defaults a whole run takes about
#   6 minutes; ONLY splits it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = build ]; then
  [ $# -ge 2 ] || { echo "usage: bench/quiet-cpu.sh build DIR [OLD_REF]" >&2; exit 2; }
  dir=$2
  mkdir -p "$dir"
  pack=${PACK:-xz}
  case $pack in xz | gzip | none) ;; *) echo "quiet-cpu: PACK=$pack: want xz, gzip or none" >&2; exit 2 ;; esac
  export CGO_ENABLED=0
  flags=(-trimpath "-ldflags=-s -w")
  rm -f "$dir"/kiln* "$dir"/reqpath* "$dir"/gateway.test*
  set -x
  go build "${flags[@]}" -o "$dir/kiln" ./cmd/kiln
  go build "${flags[@]}" -o "$dir/reqpath" ./bench/reqpath
  go test -c "${flags[@]}" -o "$dir/gateway.test" ./gateway
  set +x
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then
    commit="$commit (with uncommitted changes)"
  fi
  echo "$commit" >"$dir/COMMIT"
  if [ -n "${3:-}" ]; then
    old=$(git rev-parse --short "$3")
    adir=$(cd "$dir" && pwd)
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    git archive "$old" | tar -x -C "$src"
    (cd "$src" && set -x && go build "${flags[@]}" -o "$adir/kiln-old" ./cmd/kiln)
    echo "$old" >"$dir/COMMIT-OLD"
  fi
  if [ "$pack" != none ]; then
    for f in kiln reqpath gateway.test kiln-old; do
      [ -f "$dir/$f" ] || continue
      case $pack in
      xz) xz -T0 -6 -f "$dir/$f" ;;
      gzip) gzip -9 -f "$dir/$f" ;;
      esac
    done
  fi
  ls -l "$dir"
  du -sh "$dir"
  exit 0
fi

dir=${1:-}
if [ -n "$dir" ]; then
  [ -d "$dir" ] || { echo "quiet-cpu: $dir is not a folder (bench/quiet-cpu.sh build $dir makes it)" >&2; exit 2; }
  dir=$(cd "$dir" && pwd)
  # packed binaries are unpacked into a temporary folder (DIR may be
  # read-only)
  for f in kiln reqpath gateway.test kiln-old; do
    [ -e "$dir/$f" ] && continue
    for z in xz gz; do
      [ -f "$dir/$f.$z" ] || continue
      if [ -z "${unpacked:-}" ]; then
        unpacked=$(mktemp -d)
        trap 'rm -rf "$unpacked"' EXIT
      fi
      tool=xz
      [ $z = gz ] && tool=gzip
      command -v $tool >/dev/null || { echo "quiet-cpu: $dir/$f.$z needs $tool to unpack" >&2; exit 2; }
      $tool -dc "$dir/$f.$z" >"$unpacked/$f" || { echo "quiet-cpu: cannot unpack $dir/$f.$z" >&2; exit 2; }
      chmod +x "$unpacked/$f"
      break
    done
  done
  bin() { if [ -e "$dir/$1" ]; then echo "$dir/$1"; elif [ -e "${unpacked:-/nonexistent}/$1" ]; then echo "$unpacked/$1"; fi; }
  KILN=${KILN:-$(bin kiln)}
  REQPATH=${REQPATH:-$(bin reqpath)}
  GATEWAY_TEST=${GATEWAY_TEST:-$(bin gateway.test)}
  [ -n "$(bin kiln-old)" ] && KILN_OLD=${KILN_OLD:-$(bin kiln-old)}
  [ -f "$dir/COMMIT" ] && COMMIT=${COMMIT:-$(cat "$dir/COMMIT")}
  [ -f "$dir/COMMIT-OLD" ] && COMMIT_OLD=$(cat "$dir/COMMIT-OLD")
fi
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
only=${ONLY:-reqpath,oldnew,slo,gateway}
want() { [[ ",$only," == *",$1,"* ]]; }
need() { # need VAR WHAT: the binary named by $VAR exists and runs
  local v=${!1:-}
  if [ -z "$v" ]; then
    echo "quiet-cpu: $2 needs $1=path (or a folder from bench/quiet-cpu.sh build DIR as the first argument)" >&2
    exit 2
  fi
  [ -x "$v" ] || { echo "quiet-cpu: $1=$v is not an executable file" >&2; exit 2; }
  printf -v "$1" '%s' "$(abs "$v")"
}
for w in ${only//,/ }; do
  case $w in
  reqpath) need KILN reqpath; need REQPATH reqpath ;;
  oldnew) [ -z "${KILN_OLD:-}" ] || { need KILN oldnew; need REQPATH oldnew; need KILN_OLD oldnew; } ;;
  slo) need KILN slo ;;
  gateway) need KILN gateway; need GATEWAY_TEST gateway ;;
  *) echo "quiet-cpu: ONLY: unknown benchmark $w (want some of reqpath,oldnew,slo,gateway)" >&2; exit 2 ;;
  esac
done
"$KILN" version >/dev/null || { echo "quiet-cpu: $KILN does not run here" >&2; exit 2; }

cores=${CORES:-2}
all=$(nproc --all)
if [[ $cores =~ ^[0-9]+$ ]]; then
  [ "$cores" -ge 1 ] && [ "$cores" -le "$all" ] || { echo "quiet-cpu: CORES=$cores: this machine has $all" >&2; exit 2; }
  cpus=0
  [ "$cores" = 1 ] || cpus=0-$((cores - 1))
else
  cpus=$cores
fi
command -v taskset >/dev/null || { echo "quiet-cpu: needs taskset (util-linux)" >&2; exit 2; }
pin=(taskset -c "$cpus")
n=$("${pin[@]}" nproc) || { echo "quiet-cpu: taskset -c $cpus failed" >&2; exit 2; }
out=$(abs "${OUT:-bench/results/quiet}")
mkdir -p "$out"
rounds=${ROUNDS:-5}
window=${WINDOW:-1s}
rate=${RATE:-400}
log=$out/quiet-cpu.log
: >"$log"
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
machine="every process pinned to $n of the machine's $all cores (taskset -c $cpus), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
{
  echo "commit: $commit"
  [ -n "${KILN_OLD:-}" ] && echo "kiln-old: ${COMMIT_OLD:-$KILN_OLD}"
  echo "cores: $n (taskset -c $cpus) of $all, $model"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "started: $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2
step() { echo "quiet-cpu: $* ($(date -u +%H:%M:%S))" | tee -a "$log" >&2; }

if want reqpath; then
  step "bench/reqpath.sh $rounds $window"
  KILN=$KILN REQPATH=$REQPATH OUT=$out/request-path.md COMMIT=$commit MACHINE=$machine \
    COMMAND="CORES=$cores ROUNDS=$rounds WINDOW=$window bench/quiet-cpu.sh DIR (bench/reqpath.sh $rounds $window)" \
    "${pin[@]}" bash bench/reqpath.sh "$rounds" "$window" >/dev/null 2>>"$log"
fi
if want oldnew && [ -n "${KILN_OLD:-}" ]; then
  args=(-rounds "$rounds" -duration "$window" -rate "$rate" -targets kiln-http,kiln-grpc)
  step "reqpath -kiln KILN -kiln-old KILN_OLD ${args[*]}"
  "${pin[@]}" "$REQPATH" -kiln "$KILN" -kiln-old "$KILN_OLD" "${args[@]}" >"$out/oldnew.tmp" 2>>"$log"
  {
    echo "# kiln serve's request path, old and new binaries in the same run"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M') UTC on $n cores ($model), $machine."
    echo "New: commit $commit; old (-kiln-old): ${COMMIT_OLD:-$KILN_OLD}. The bundled tinycnn, over loopback. Command:"
    echo
    echo "    reqpath -kiln KILN -kiln-old KILN_OLD ${args[*]}"
    echo
    cat "$out/oldnew.tmp"
  } >"$out/request-path-old-new.md"
  rm -f "$out/oldnew.tmp"
fi
if want slo; then
  rates=${RATES:-250:2250:500}
  interval=${INTERVAL:-2s}
  step "bench/slo-batching.sh $rates $interval"
  KILN=$KILN KILN_OLD=${KILN_OLD:-} OLD_NAME="commit ${COMMIT_OLD:-unknown}" OUT=$out/slo-batching MACHINE="$machine" SIM=0 \
    "${pin[@]}" bash bench/slo-batching.sh "$rates" "$interval" >>"$log" 2>&1
fi
if want gateway; then
  iter=${ITER:-3000}
  count=${COUNT:-3}
  step "bench/gateway-overhead.sh $iter $count"
  {
    echo "# $machine; commit $commit"
    [ -n "${KILN_OLD:-}" ] && echo "# old-* rows: kiln gateway of ${COMMIT_OLD:-$KILN_OLD}"
    KILN_BIN=$KILN KILN_OLD_BIN=${KILN_OLD:-} GATEWAY_TEST=$(abs "$GATEWAY_TEST") \
      "${pin[@]}" bash bench/gateway-overhead.sh "$iter" "$count" 2>>"$log"
  } >"$out/gateway-overhead.txt"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
echo "finished: $(date -u '+%Y-%m-%d %H:%M:%S') UTC" >>"$out/machine.txt"
step "done: $(cd "$out" && ls | tr '\n' ' ')"
