// Package quant converts float32 graphs to reduced precision: INT8 with
// post-training calibration (this file's subject) and FP16 (fp16*.go).
//
// # INT8 post-training quantization
//
// The builder's INT8 path, on an optimized graph g (optimize.Run at level 2,
// so that convolutions are kiln::FusedConv and matrix products with a bias
// kiln::FusedMatMul):
//
//	eng, _ := engine.New(g)                                  // the FP32 engine
//	batches, _ := quant.LoadBatches(dir, eng.Inputs())       // or RandomBatches
//	table, _ := quant.Calibrate(ctx, eng, batches, quant.Entropy, quant.CalibOptions{})
//	_ = quant.WriteTable("model.calib", table)               // the calibration cache
//	rep, _ := quant.QuantizeINT8(g, table, quant.INT8Options{Layers: overrides})
//	qeng, _ := engine.New(g)                                 // eng still runs FP32
//	acc, _ := quant.Compare(ctx, eng, qeng, batches)        // the accuracy report
//
// QuantizeINT8 puts new nodes in the place of those it rewrites and leaves
// the old ones alone, so an engine built on g before it keeps computing
// FP32.
//
// Calibration runs the FP32 engine over the batches and records, for every
// float32 value (graph inputs included), the largest magnitude amax it keeps;
// the value's INT8 scale is amax/127 (symmetric, per tensor). Three methods:
//
//   - Entropy (TensorRT's): a histogram of |x| in 2048 bins over [0, max|x|];
//     for every candidate threshold of i bins, i = 128 .. 2047, P is the first
//     i bins with the counts beyond them added to the last, Q is those i bins
//     merged into 128 levels and spread back evenly over the bins that are not
//     empty; amax is i times the bin width for the i of least KL(P||Q). As in
//     NVIDIA's reference implementation, bin 0 counts as much as bin 1: left
//     as is, the exact zeros after a ReLU (often half the values) make every
//     merge of bin 0 with its neighbours look costly and drive the threshold
//     down to 128 bins, which cost mobilenet_v2 its accuracy (output cosine
//     0.986 against 0.9998 with the rule).
//   - MinMax: amax = max|x|.
//   - Percentile: amax = the given percentile of |x| (99.99 by default), read
//     from the same histogram.
//
// The calibration cache (WriteTable, ReadTable) is a versioned text file:
// the method, a hash of the calibrated graph (GraphHash) and one line per
// value with amax as the exact bits of a float32 in hex. A cache made for
// another graph is refused with ErrCache, naming both hashes.
//
// # Which layers run in INT8
//
// QuantizeINT8 rewrites kiln::FusedConv (and Conv) into kiln::QConv, and
// kiln::FusedMatMul, MatMul and Gemm with a constant 2-D float32 weight into
// kiln::QMatMul: int8 weights with one scale per output channel
// (max|w|/127), the input quantized with the calibrated scale of the value
// it reads. The rule, first match wins (the constant Rule prints it):
//
//  1. INT8Options.Layers (the CLI's --layer-precision NAME:fp32|fp16|int8)
//     decides: fp32 and fp16 keep the layer in float; forcing int8 on a
//     layer that cannot be quantized is an error, as is naming no node of
//     the graph.
//  2. Only convolutions and matrix products with float32 constant weights
//     are candidates; the rest of the graph stays as it is.
//  3. FP32: a convolution reading a graph input with at most 4 channels (the
//     first layer of an image model: little work, and rounding the raw input
//     costs the most accuracy).
//  4. FP32: a layer whose output is a graph output (the logits), directly
//     or through shape-only ops (Reshape, Flatten, Squeeze, Unsqueeze,
//     Transpose, Identity).
//  5. FP32: a layer whose input has no calibration range (or a zero one).
//  6. Otherwise INT8.
//
// Every decision is returned (INT8Report) for the build log and kiln
// inspect. Two tools help choose overrides: CompareLayers shows where the
// error of an INT8 engine comes from (every value against FP32), and
// Sensitivity measures the model with each INT8 layer alone quantized
// (one engine per layer); its Below gives the FP32 overrides for the layers
// that cost more than a chosen cosine. SensitivityWith, which kiln build
// --int8-min-cosine runs, reuses the caller's FP32 engine, runs the
// reference once per batch and each layer's measurement on only the part
// of the graph the layer changes.
//
// # Explicitly quantized models
//
// ImportQDQ turns the QuantizeLinear -> DequantizeLinear patterns of QDQ
// models around Conv, MatMul and Gemm into the same kiln::QConv and
// kiln::QMatMul (symmetric int8 only; other layers stay in float and the
// report says why). Run on the imported graph, before optimize.Run, it keeps
// the model's int8 weights exactly (the INT8 ops then compute what the Q/DQ
// graph computes, to float rounding), but the activations after the layers
// stay separate nodes; run after optimize.Run, it finds the weights folded
// into float and the activations fused, and quantizes the weights again per
// channel (exact when the model's weight scales were max|w|/127).
//
// # Accuracy report
//
// Compare runs the FP32 and the reduced-precision engines on the same
// batches and reports, per output, the max absolute and relative error, the
// cosine similarity and the top-1 agreement (argmax over the last axis).
package quant
