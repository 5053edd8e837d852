#!/usr/bin/env bash
# efficientnet_b0 and vit_b_16 on the GPU machine: export them with its PyTorch
# (../shared/tools/export_models.py, TorchScript exporter), then `kiln run
# MODEL.onnx --device cuda` (built in memory, FP32 and FP16) against PyTorch's
# float32 outputs, with latency, and the CPU for comparison.
#
# Here (Go):           go build -o .gpubin-plans/kiln ./cmd/kiln && cp ../shared/tools/export_models.py .gpubin-plans/
# On the GPU machine:  bench/gpu-zoo.sh OUTDIR   (carry .gpubin-plans)
set -u
cd "$(dirname "$0")/.."
out=${1:?usage: bench/gpu-zoo.sh OUTDIR}
w=${ZOO_WORK:-/tmp/zoo}
mkdir -p "$w" "$out"
models=${MODELS:-"efficientnet_b0 vit_b_16"}
python3 - "$w" "$models" >"$out/export.log" 2>&1 <<'PY'
import functools, importlib.util, sys, torch
# PyTorch 2.11's default (dynamo) exporter fails on these models; the
# TorchScript one cannot export the fused multi-head attention fast path.
torch.backends.mha.set_fastpath_enabled(False)
torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)
spec = importlib.util.spec_from_file_location("em", ".gpubin-plans/export_models.py")
em = importlib.util.module_from_spec(spec); spec.loader.exec_module(em)
# torchvision initializes ViT's classification head with zeros, which would
# make its output all zeros whatever the encoder computes: give it weights.
vit = em.MODELS["vit_b_16"]
def vit_with_head():
    m, *rest = vit()
    torch.nn.init.normal_(m.heads.head.weight, std=0.02)
    torch.nn.init.normal_(m.heads.head.bias, std=0.02)
    return (m, *rest)
em.MODELS["vit_b_16"] = vit_with_head
for n in sys.argv[2].split(): em.export(n, sys.argv[1])
PY
echo "export exit $?"
k=.gpubin-plans/kiln
for m in $models; do
  for p in "" --fp16; do
    echo "== $m cuda $p"
    $k run "$w/$m/model.onnx" --device cuda $p --data "$w/$m/test_data_set_0" 2>&1 | grep -E "^output|kiln:|built" | cut -c1-300
    $k run "$w/$m/model.onnx" --device cuda $p --iterations 30 --warmup 5 2>&1 | grep -E "latency ms|kiln:" | cut -c1-300
  done
  echo "== $m cpu"
  $k run "$w/$m/model.onnx" --data "$w/$m/test_data_set_0" 2>&1 | grep -E "^output|kiln:" | cut -c1-300
done
