#!/usr/bin/env python3
"""Times one ONNX model with ONNX Runtime's Python package (CPU, 2 intra-op
threads, all graph optimizations, sequential), as bench/ort_time.js does with
onnxruntime-node, for machines that have Python's onnxruntime and no Node
(the GPU machine). Prints the median latency in ms.

usage: ort_time.py MODEL.onnx ITERS name:1x3x224x224 [name:dims ...]
"""
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    model, iters, shapes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in sess.get_inputs()}
    rng = np.random.default_rng(1)
    feeds = {}
    for s in shapes:
        name, dims = s.rsplit(":", 1)
        shape = [int(d) for d in dims.split("x")]
        if "int64" in types.get(name, "") or "ids" in name or "mask" in name:
            hi = 2 if "mask" in name else 64
            v = np.ones(shape, np.int64) if "mask" in name else rng.integers(0, hi, shape, dtype=np.int64)
            feeds[name] = v
        else:
            feeds[name] = (rng.random(shape, dtype=np.float32) * 2 - 1).astype(np.float32)
    for _ in range(5):
        sess.run(None, feeds)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        t.append((time.perf_counter_ns() - t0) / 1e6)
    t.sort()
    print("%.3f" % t[len(t) // 2])


if __name__ == "__main__":
    main()
