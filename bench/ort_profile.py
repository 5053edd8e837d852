#!/usr/bin/env python3
"""Per-node profile of one ONNX model under ONNX Runtime's Python package
(CPU, 2 intra-op threads, all graph optimizations, sequential), as
bench/ort_profile.js does with onnxruntime-node, for machines that have
Python's onnxruntime and no Node (the GPU machine). Runs the model ITERS
times on random inputs with the session's profiler on and prints, per node
of the optimized graph, its op type and median kernel time in
microseconds, then the sum per op type.

usage: ort_profile.py MODEL.onnx ITERS name:1x3x224x224 [name:dims ...]
"""
import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def main():
    model, iters, shapes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    tmp = tempfile.mkdtemp(prefix="ortprof-")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tmp, "p")
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in sess.get_inputs()}
    rng = np.random.default_rng(1)
    feeds = {}
    for s in shapes:
        name, dims = s.rsplit(":", 1)
        shape = [int(d) for d in dims.split("x")]
        if "int64" in types.get(name, "") or "ids" in name or "mask" in name:
            v = np.ones(shape, np.int64) if "mask" in name else rng.integers(0, 64, shape, dtype=np.int64)
            feeds[name] = v
        else:
            feeds[name] = (rng.random(shape, dtype=np.float32) * 2 - 1).astype(np.float32)
    for _ in range(5 + iters):
        sess.run(None, feeds)
    path = sess.end_profiling()
    with open(path) as f:
        events = json.load(f)
    per = {}  # node name -> (op, durations), in the order of the first run
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        per.setdefault(name, (e.get("args", {}).get("op_name", "?"), []))[1].append(e["dur"])
    by_op, total = {}, 0
    print("node\top\tmedian_us")
    for name, (op, durs) in per.items():
        d = sorted(durs[-iters:])
        med = d[len(d) // 2]
        total += med
        by_op[op] = by_op.get(op, 0) + med
        print(f"{name}\t{op}\t{med}")
    print("\nop\tsum_median_us\tshare")
    for op, us in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"{op}\t{us}\t{100 * us / max(1, total):.1f}%")
    print(f"total\t{total}")
    os.remove(path)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
