// Package nn implements the ONNX convolution, matrix product, pooling, quantized and Einsum operators.
package nn
