// Package build is kiln's engine builder, the equivalent of TensorRT's
// builder: an ONNX model goes in, an engine tuned for one device comes out,
// ready to be written as a plan file (package plan) or run at once.
//
// The stages, each logged and timed:
//
//  1. load: the ONNX model, hashed for the plan header
//  2. profiles: the optimization profiles given, validated against the
//     model, or one derived from it (a symbolic first dimension is a batch
//     of 1..MaxBatch, named dimensions come from Options.Dims)
//  3. optimize: the optimizer passes of the chosen level (package optimize)
//  4. precision: FP16 conversion, or INT8 calibration and quantization
//     with an accuracy report against FP32 (package quant), on the
//     calibration data or on random batches at each profile's opt shape
//     (without a profile, at Options.OptShapes or the derived profile's
//     opt shape: DefaultShapes); with Options.Int8MinCosine, the INT8
//     sensitivity analysis between calibration and quantization keeps in
//     float the layers INT8 alone hurts most (timed as the step
//     "precision: sensitivity", or "compile: sensitivity" on a device)
//  5. tactics: each layer's implementations timed at every profile's opt
//     shape, with a persistent timing cache (package engine/tactic)
//  6. memory: the activation arena planned at every profile's max shape
//
// The builder finds its device by name in Options.Devices, by default
// kiln's set (package devices: the GPU executor, then the CPU); it imports
// no device package itself.
package build
