// Package image implements the ONNX image operators: Resize, Upsample, DepthToSpace, SpaceToDepth,
// NonMaxSuppression, RoiAlign, GridSample.
package image
