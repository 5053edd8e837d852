// Package ops defines kiln's operators: for each ONNX op type, attribute
// parsing into a typed kernel (done once per node), shape and type inference
// over symbolic dimensions, and a CPU implementation. Ops register
// themselves in init() with Register; the runtime finds them with Lookup.
//
// Kernels never modify their input tensors: an output may share an input's
// storage (Reshape, Identity), so tensors are immutable once produced.
package ops
