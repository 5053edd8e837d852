// Package shape implements the ONNX operators that move, select and reshape data: Reshape, Transpose,
// Concat, Split, Slice, Gather, Scatter, Pad, Tile, Expand and the like, with symbolic shape propagation.
package shape
