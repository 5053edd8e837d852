#!/usr/bin/env bash
# Exports the benchmark models that are too large to keep in ../shared/models
# (by default resnet50 and bert_base, random seeded weights) with
# ../shared/tools/export_models.py, each as OUT_DIR/NAME/model.onnx plus
# OUT_DIR/NAME/test_data_set_0 (inputs and the outputs PyTorch computed), the
# layout `kiln run PLAN --data` and `EXTRA=OUT_DIR bench/cpu-models.sh` read.
#
# usage: bench/export-models.sh OUT_DIR [NAME ...]
#   NAME: any model of export_models.py's MODELS (resnet18, resnet50,
#   bert_base, efficientnet_b0, vit_b_16, or the small set); default
#   resnet50 bert_base. A model already in OUT_DIR is exported again.
#
# Needs Debian's PyTorch, torchvision and onnx for the system Python
# (python3-torch python3-torchvision python3-onnx, about 1 GB): installs them
# with apt-get when /usr/bin/python3 cannot import them (root or sudo). Tested
# with Debian 12's torch 1.13.1, torchvision 0.14.1 and onnx 1.12. The
# exporter runs from an empty temporary folder, since a folder named onnx/ in
# the current directory (kiln's repository has one) would shadow the onnx
# package. bert_base's test data is a batch of 2 (the second sequence half
# masked); resnet50 takes about 1 minute and bert_base 10 on 2 busy cores.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [NAME ...]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
exporter=$here/../shared/tools/export_models.py
[ -f "$exporter" ] || { echo "$exporter is missing (../shared of the repository)" >&2; exit 1; }
dir=$1
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(resnet50 bert_base)
# the exporter's MODELS table, one name per `    "name": lambda` line
known=" $(sed -n 's/^    "\([a-z0-9_]*\)": lambda.*/\1/p' "$exporter" | tr '\n' ' ')"
for n in "${names[@]}"; do
  if [[ "$known" != *" $n "* ]]; then
    echo "unknown model \"$n\"; export_models.py knows:$known" >&2
    exit 2
  fi
done
mkdir -p "$dir"
out=$(cd "$dir" && pwd)
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && "$py" -c 'import torch, torchvision, onnx' 2>/dev/null); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing python3-torch python3-torchvision python3-onnx" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-torch python3-torchvision python3-onnx
fi
cd "$work"
"$py" "$exporter" "$out" "${names[@]}"
