// Package image implements the ONNX image and signal operators: Resize and
// the deprecated Upsample (nearest, N-D linear and cubic interpolation with
// every coordinate transformation mode, antialiasing, axes and aspect ratio
// policies), NonMaxSuppression, RoiAlign, GridSample, and the signal
// operators DFT, STFT, HannWindow, HammingWindow, BlackmanWindow and
// MelWeightMatrix.
//
// Resize computes one interpolation table per axis (input indices and
// weights for every output coordinate, as the ONNX reference defines them)
// and applies the tables one axis at a time; nearest mode is a parallel
// gather that copies repeated rows and has a fast path for integer
// enlargement, and linear resizing of the two innermost axes of float32
// images is fused into a single pass.
package image
