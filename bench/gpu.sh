#!/usr/bin/env bash
# GPU checks and timings of kiln's CUDA executor (device/cuda/gpuexec), in one
# run on the GPU machine, which has no Go toolchain.
#
# Here (a CPU machine with Go):   bench/gpu.sh build
#   builds the test binaries into .gpubin/ (git-ignored through
#   .git/info/exclude) and copies the reference models there.
# On the GPU machine (carry .gpubin):   bench/gpu.sh run OUTDIR
#   runs the bindings' tests, the executor's GPU tests (every model against
#   kiln's CPU FP32 output: FP32 within rtol 1e-3 / atol 1e-4, TF32 off;
#   FP16 with a cosine similarity of at least 0.999 per output) and the
#   timing, writing logs and timing.md to OUTDIR and a summary to stdout.
# On the GPU machine:   bench/gpu.sh bench OUTDIR
#   exports ResNet-50 and BERT-base with the machine's PyTorch
#   (export_models.py, copied into .gpubin by build), checks kiln's GPU
#   outputs (FP32, FP16) against kiln's CPU FP32 outputs and PyTorch's, times
#   kiln (FP32, FP16) and PyTorch (FP32 eager, FP16 eager and + CUDA graph,
#   in NCHW and channels_last for ResNet-50, torch.compile FP16 (channels_last
#   for ResNet-50) and max-autotune-no-cudagraphs as far as its time allows)
#   on the same GPU at
#   batch 1, 8, 64, 256 (ResNet-50) and 1, 8, 32 (BERT-base, sequence 128),
#   and writes OUTDIR/result.md (the table with the ratios) and the raw rows;
#   BENCH_BATCHES="resnet50=1,256;bert_base=1,32" narrows the batches.
set -uo pipefail
cd "$(dirname "$0")/.."

# torch_py prints the PyTorch side of "bench" (build writes it to .gpubin/gpu_torch.py).
torch_py() {
  cat <<'PY'
# PyTorch baselines for bench/gpu.sh (written into .gpubin by "bench/gpu.sh build").
#   gpu_torch.py EXPORT_MODELS.py OUT.jsonl eager|compile   time PyTorch, appending JSON lines
#   gpu_torch.py table KILN.jsonl TORCH.jsonl               print the markdown table with the ratios
import importlib.util, json, os, sys, time

# BENCH_BATCHES ("resnet50=1,256;bert_base=1,32") narrows the batches, for kiln and PyTorch alike.
BATCHES = {"resnet50": [1, 8, 64, 256], "bert_base": [1, 8, 32]}
if os.environ.get("BENCH_BATCHES"):
    BATCHES = {m: [int(b) for b in bs.split(",")] for m, _, bs in
               (part.partition("=") for part in os.environ["BENCH_BATCHES"].split(";"))}


def load(path):
    rows = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def table(kiln_path, torch_path):
    kiln, torch_rows = load(kiln_path), load(torch_path)
    k = {(r["model"], r["batch"], r["precision"]): r for r in kiln if r.get("device_ms")}
    t = {}
    for r in torch_rows:
        t[(r["model"], r["batch"], r["variant"])] = r["ms"]
    gpu = next((r["gpu"] for r in kiln if r.get("gpu")), "?")
    tinfo = next((r for r in torch_rows if r.get("torch")), {})
    variants = [("fp32_eager", "PyTorch FP32 eager"), ("fp16_eager", "FP16 eager"), ("fp16_eager_cl", "FP16 eager, channels_last"),
                ("fp16_graph", "FP16 + CUDA graph"), ("fp16_graph_cl", "FP16 + CUDA graph, channels_last"),
                ("fp16_compile", "torch.compile FP16"), ("fp16_compile_cl", "torch.compile FP16, channels_last"),
                ("fp16_compile_mat_cl", "torch.compile max-autotune-no-cudagraphs FP16, channels_last")]
    out = ["GPU: " + gpu, "PyTorch %s, cuDNN %s (TF32 off for the FP32 rows)" % (tinfo.get("torch", "?"), tinfo.get("cudnn", "?")), "",
           "Device time per batch in ms (median; kiln: CUDA events around a replay of the layers' CUDA graph, inputs already on the GPU;"
           " PyTorch: CUDA events around the call, inputs on the GPU; channels_last rows for the convolutional model only)."
           " Fastest PyTorch = the lowest of the FP16 PyTorch columns; ratio = fastest PyTorch ms / kiln FP16 ms (above 1: kiln faster).", "",
           "| model | batch | kiln FP32 | kiln FP16 | kiln FP16 end-to-end | " + " | ".join(n for _, n in variants) + " | fastest PyTorch | kiln FP16 img/s or seq/s | ratio vs fastest |",
           "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in variants) + " | --- | --- | --- |"]
    f = lambda v: "%.3f" % v if v else "-"
    for model, bs in BATCHES.items():
        for b in bs:
            k32 = k.get((model, b, "fp32"), {}).get("device_ms")
            k16r = k.get((model, b, "fp16"), {})
            k16, e2e = k16r.get("device_ms"), k16r.get("e2e_ms")
            vals = [t.get((model, b, v)) for v, _ in variants]
            fp16 = [(ms, n) for (v, n), ms in zip(variants, vals) if ms and v != "fp32_eager"]
            best = min(fp16) if fp16 else None
            rate = "%.0f" % (b * 1000 / k16) if k16 else "-"
            out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (model, b, f(k32), f(k16), f(e2e), " | ".join(f(v) for v in vals),
                       "%.3f (%s)" % best if best else "-", rate, "%.2f" % (best[0] / k16) if best and k16 else "-"))
    out += ["", "Correctness (kiln GPU outputs at the exported test inputs):", ""]
    for r in kiln:
        if r.get("check"):
            out.append("- %s batch %d %s: %s" % (r["model"], r["batch"], r["precision"], r["check"]))
    notes = [r["note"] for r in torch_rows if r.get("note")]
    if notes:
        out += ["", "PyTorch notes:", ""] + ["- " + n for n in notes]
    print("\n".join(out))


def main():
    if sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
        return
    import torch
    spec = importlib.util.spec_from_file_location("em", sys.argv[1])
    em = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(em)
    out, mode = open(sys.argv[2], "a"), sys.argv[3]
    iters = int(os.environ.get("ITERS", "20"))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    info = {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version()}

    def emit(**r):
        r.update(info)
        out.write(json.dumps(r) + "\n")
        out.flush()
        print(json.dumps(r), flush=True)

    def timeit(fn, n):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(n):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            ts.append(s.elapsed_time(e))
        ts.sort()
        return ts[len(ts) // 2]

    def inputs(model, b, half):
        if model == "resnet50":
            x = torch.randn(b, 3, 224, 224, device="cuda")
            return (x.half() if half else x,)
        return (torch.randint(0, 30522, (b, 128), device="cuda"), torch.ones(b, 128, dtype=torch.int64, device="cuda"))

    order = [("resnet50", 64), ("bert_base", 8), ("resnet50", 1), ("bert_base", 1), ("resnet50", 8), ("bert_base", 32), ("resnet50", 256)]
    models = {}
    with torch.inference_mode():
        if mode == "eager":
            for model, bs in BATCHES.items():
                m = em.MODELS[model]()[0].eval().cuda()
                args32 = {b: inputs(model, b, False) for b in bs}
                for b in bs:
                    a = args32[b]
                    emit(model=model, batch=b, variant="fp32_eager", ms=timeit(lambda: m(*a), iters))
                del args32
                m = m.half()
                for b in bs:
                    a = inputs(model, b, True)
                    emit(model=model, batch=b, variant="fp16_eager", ms=timeit(lambda: m(*a), iters))
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for _ in range(3):
                            m(*a)
                    torch.cuda.current_stream().wait_stream(s)
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        m(*a)
                    emit(model=model, batch=b, variant="fp16_graph", ms=timeit(g.replay, iters))
                    del g
                if model == "resnet50":
                    m = m.to(memory_format=torch.channels_last)
                    for b in bs:
                        a = tuple(x.to(memory_format=torch.channels_last) for x in inputs(model, b, True))
                        emit(model=model, batch=b, variant="fp16_eager_cl", ms=timeit(lambda: m(*a), iters))
                        s = torch.cuda.Stream()
                        s.wait_stream(torch.cuda.current_stream())
                        with torch.cuda.stream(s):
                            for _ in range(3):
                                m(*a)
                        torch.cuda.current_stream().wait_stream(s)
                        g = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(g):
                            m(*a)
                        emit(model=model, batch=b, variant="fp16_graph_cl", ms=timeit(g.replay, iters))
                        del g
                del m
                torch.cuda.empty_cache()
        else:
            # torch.compile: default mode (the convolutional model in
            # channels_last, the transformer as it is), then
            # max-autotune-no-cudagraphs on the largest batches while the
            # caller's time limit allows (each row is written as it comes).
            runs = [("default", model, b) for model, b in order] + [("max-autotune-no-cudagraphs", "resnet50", 256), ("max-autotune-no-cudagraphs", "resnet50", 64)]
            runs = [r for r in runs if r[2] in BATCHES.get(r[1], [])]  # BENCH_BATCHES narrows torch.compile too
            for mode_, model, b in runs:
                cl = model == "resnet50"
                key = (mode_, model)
                if key not in models:
                    mod = em.MODELS[model]()[0].eval().cuda().half()
                    if cl:
                        mod = mod.to(memory_format=torch.channels_last)
                    models[key] = torch.compile(mod, mode=mode_)
                m = models[key]
                a = inputs(model, b, True)
                if cl:
                    a = tuple(x.to(memory_format=torch.channels_last) for x in a)
                t0 = time.time()
                m(*a)
                torch.cuda.synchronize()
                c = time.time() - t0
                variant = "fp16_compile" + ("_mat" if mode_ != "default" else "") + ("_cl" if cl else "")
                emit(model=model, batch=b, variant=variant, ms=timeit(lambda: m(*a), iters), compile_s=c,
                     note="torch.compile (%s)%s %s batch %d: first call (compilation) %.0f s" % (mode_, ", channels_last" if cl else "", model, b, c))

if __name__ == "__main__":
    main()
PY
}

case "${1:-}" in
build)
  set -e
  mkdir -p .gpubin/models
  for m in resnet_mini mobilenet_v2 squeezenet1_1 bert_mini yolo_tiny; do
    mkdir -p .gpubin/models/$m
    cp -r ../shared/models/$m/model.onnx ../shared/models/$m/test_data_set_0 .gpubin/models/$m/
  done
  cp ../shared/tools/export_models.py .gpubin/
  torch_py >.gpubin/gpu_torch.py
  chmod -R u+w .gpubin
  go test -c -ldflags='-s -w' -o .gpubin/cuda.test ./device/cuda/
  go test -c -ldflags='-s -w' -o .gpubin/gpuexec.test ./device/cuda/gpuexec/
  du -sh .gpubin
  ;;
run)
  out=${2:?usage: bench/gpu.sh run OUTDIR}
  mkdir -p "$out"
  root=$PWD
  export KILN_MODELS=$root/.gpubin/models
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  (cd device/cuda && "$root/.gpubin/cuda.test" -test.v -test.timeout 300s) >"$out/cuda.log" 2>&1
  echo "cuda bindings: exit $?"
  # One process per group, so that a crash in one does not hide the others.
  : >"$out/gpuexec.log"
  for pat in 'TestModelsFP16OnGPU' 'TestLayersFP16OnGPU' 'TestModelsOnGPU/.*/.*/kernels' 'TestOpsOnGPU/.*/kernels' 'TestModelsOnGPU/.*/.*/libs' 'TestOpsOnGPU/.*/libs' 'TestOpsOnGPU/.*/fp16' \
    'TestContextsConcurrently|TestGPUErrors' 'TestTuneOnGPU' 'TestLayersOnGPU' 'TestCompile|TestPlan|TestNewEngine'; do
    (cd device/cuda/gpuexec && "$root/.gpubin/gpuexec.test" -test.v -test.timeout 300s -test.run "$pat") >>"$out/gpuexec.log" 2>&1
    echo "gpuexec tests $pat: exit $?"
  done
  grep -E '^(--- |    --- )(FAIL|SKIP)|panic|^FAIL|^ok' "$out/cuda.log" "$out/gpuexec.log" | head -60
  grep -E 'largest difference|layers:|values match|fp16 |cosine|lowest' "$out/gpuexec.log" | cut -c1-300 | head -60
  if [ -z "${NO_TIMING:-}" ]; then
    (cd device/cuda/gpuexec && KILN_GPU_TIMING=1 KILN_GPU_TIMING_OUT="$out/timing.md" \
      "$root/.gpubin/gpuexec.test" -test.v -test.timeout 300s -test.run GPUTiming) >"$out/timing.log" 2>&1
    echo "timing: exit $?"
    cat "$out/timing.md" 2>/dev/null || tail -20 "$out/timing.log"
  fi
  ;;
bench)
  out=${2:?usage: bench/gpu.sh bench OUTDIR}
  mkdir -p "$out"
  root=$PWD
  work=${BENCH_WORK:-/tmp/kiln-bench}
  mkdir -p "$work/models"
  t0=$(date +%s)
  export PYTHONUNBUFFERED=1
  # 1. Export with this machine's PyTorch (CPU, float32 reference outputs).
  # (SKIP_EXPORT=1: the models are in $BENCH_WORK/models already)
  if [ -n "${SKIP_EXPORT:-}" ]; then
    echo "export skipped" >"$out/export.log"
  elif ! python3 .gpubin/export_models.py "$work/models" resnet50 bert_base >"$out/export.log" 2>&1; then
    echo "export failed (see export.log); retrying with the TorchScript exporter (dynamo=False)"
    python3 - "$work/models" >>"$out/export.log" 2>&1 <<'PY'
import functools, importlib.util, sys, torch
orig = torch.onnx.export
torch.onnx.export = functools.partial(orig, dynamo=False)
spec = importlib.util.spec_from_file_location("em", ".gpubin/export_models.py")
em = importlib.util.module_from_spec(spec); spec.loader.exec_module(em)
for n in ("resnet50", "bert_base"): em.export(n, sys.argv[1])
PY
  fi
  tail -3 "$out/export.log"
  echo "export: $(( $(date +%s) - t0 )) s"
  # 2. kiln: correctness at the test inputs, then FP32 and FP16 timings.
  (cd device/cuda/gpuexec && KILN_GPU_BENCH="$work/models" KILN_GPU_BENCH_OUT="$out/kiln.jsonl" \
    KILN_GPU_BENCH_BATCHES=${BENCH_BATCHES:-} KILN_GPU_BENCH_ITERS=${ITERS:-20} \
    "$root/.gpubin/gpuexec.test" -test.v -test.timeout 400s -test.run 'TestGPUBench') >"$out/kiln_bench.log" 2>&1
  echo "kiln bench: exit $? at $(( $(date +%s) - t0 )) s"
  if [ -n "${PROFILE:-}" ]; then # e.g. PROFILE='resnet50=64;bert_base=32': device time by op (FP16)
    (cd device/cuda/gpuexec && KILN_GPU_BENCH="$work/models" KILN_GPU_PROFILE="$PROFILE" \
      "$root/.gpubin/gpuexec.test" -test.v -test.timeout 120s -test.run 'TestGPUProfile') >"$out/profile.log" 2>&1
    echo "profile: exit $?"
    grep -o 'profile .*' "$out/profile.log" | tr ';' '\n' | head -40
  fi
  grep -E '^\s*(--- FAIL|FAIL|panic)|gpu_test|bench_test' "$out/kiln_bench.log" | grep -v '"device_ms":0,' | cut -c1-400 | head -20
  # 3. PyTorch on the same GPU: eager FP32 and FP16, FP16 + CUDA graph; then torch.compile in what time is left.
  python3 .gpubin/gpu_torch.py .gpubin/export_models.py "$out/torch.jsonl" eager >"$out/torch.log" 2>&1
  echo "torch eager: exit $? at $(( $(date +%s) - t0 )) s"
  left=$(( ${BENCH_BUDGET:-480} - ($(date +%s) - t0) ))
  if [ "$left" -gt 60 ]; then
    timeout "$left" python3 .gpubin/gpu_torch.py .gpubin/export_models.py "$out/torch.jsonl" compile >>"$out/torch.log" 2>&1
    echo "torch.compile: exit $? (limit ${left} s) at $(( $(date +%s) - t0 )) s"
  else
    echo "torch.compile: skipped, ${left} s left" | tee -a "$out/torch.log"
  fi
  tail -5 "$out/torch.log"
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | sed -E 's/^NVIDIA //; s/ .*//' | tr 'A-Z' 'a-z')
  python3 .gpubin/gpu_torch.py table "$out/kiln.jsonl" "$out/torch.jsonl" >"$out/result.md"
  cp "$out/result.md" "$out/gpu-$(date -u +%F)-${gpu:-gpu}.md" # for bench/results/
  cat "$out/result.md"
  ;;
*)
  echo "usage: bench/gpu.sh build | run OUTDIR | bench OUTDIR" >&2
  exit 2
  ;;
esac
