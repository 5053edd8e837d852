// Package tensor provides kiln's n-dimensional array: a data type, a shape and
// contiguous, 64-byte aligned storage, with typed views over the bytes and
// conversions between the ONNX element types (float16 and bfloat16 included).
package tensor
