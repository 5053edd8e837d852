#!/usr/bin/env bash
# The elastic loop of deploy/helm/kiln, recorded in bench/results/elastic-loop.{md,csv,svg}:
# kiln serve replicas (bert_mini of ../shared/models, each with a 250m CPU limit) behind
# kiln gateway, a real Prometheus scraping them, kiln perf at 6, then 120, then 6 requests/s,
# and the HPA's algorithm on the chart's metric (see bench/elastic/doc.go). Takes about
# 17 minutes; needs root for the replicas' CPU limits (cgroup v1 cpu controller), else pass
# --cpu-limit 0. Extra arguments go to the program (go run ./bench/elastic --help), e.g.
# --time-scale 10 for a run ten times faster, --out DIR to write elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps-deploy.sh   # Debian's prometheus package: prometheus and promtool
command -v prometheus >/dev/null || { echo "prometheus missing: apt-get install prometheus" >&2; exit 1; }
model=../shared/models/bert_mini
[ -f "$model/model.onnx" ] || { echo "$model/model.onnx missing (the shared models folder)" >&2; exit 1; }
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/kiln" ./cmd/kiln
go build -o "$bin/elastic" ./bench/elastic
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/elastic" --kiln "$bin/kiln" \
  --onnx "$model/model.onnx" -m bert_mini --input-data "$model/test_data_set_0" --binary \
  -f bench/elastic/values.yaml --cpu-limit 250m --cpu-period 10ms --phases 60s:6,240s:120,720s:6 "$@"
