// Package math implements the ONNX elementwise operators: unary math and
// activation functions, arithmetic, bitwise, logical and comparison ops with
// numpy broadcasting, variadic Min/Max/Sum/Mean, Where, Cast and CastLike,
// Dropout (inference), Det, and the string ops StringNormalizer and
// TfIdfVectorizer.
//
// Broadcasting ops merge the output's dimensions into as few runs as their
// operands allow (a [N,C,H,W] tensor with a [C,1,1] one becomes N*C runs of
// H*W elements against one value each), so that the inner loops read
// contiguous memory or a single value and never an index table.
package math
