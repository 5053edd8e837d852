// Package norm implements the ONNX normalization, softmax, reduction, ArgMax/TopK and CumSum operators.
package norm
