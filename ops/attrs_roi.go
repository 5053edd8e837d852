package ops

import "github.com/kilnai/kiln/ir"

// Typed attributes of RoiAlign (ops/image) and MaxRoiPool (ops/nn), read
// by the CPU kernels and the CUDA kernels alike (see Def.Attrs).

// RoiAlignAttrs are RoiAlign's attributes.
type RoiAlignAttrs struct {
	// Max is set by "mode" "max" ("avg" by default; avg or max).
	Max bool
	// OutputHeight and OutputWidth are "output_height" and
	// "output_width" (1 by default), in [1, 2^40].
	OutputHeight, OutputWidth int64
	// SamplingRatio is "sampling_ratio" (0 by default: adaptive), in
	// [0, 1024].
	SamplingRatio int64
	// SpatialScale is "spatial_scale" (1 by default).
	SpatialScale float32
	// HalfPixel is set by "coordinate_transformation_mode" "half_pixel"
	// (from opset 16, and its default there; "output_half_pixel" before
	// it, and the default): the rois are shifted by half a pixel.
	HalfPixel bool
}

// ParseRoiAlignAttrs reads a RoiAlign node's attributes.
func ParseRoiAlignAttrs(n *ir.Node, opset int64) (RoiAlignAttrs, error) {
	a := AttrsOf(n)
	const maxDim = 1 << 40
	r := RoiAlignAttrs{Max: a.OneOf("mode", a.String("mode", "avg"), "avg", "max") == "max"}
	r.OutputHeight, r.OutputWidth = a.Int("output_height", 1), a.Int("output_width", 1)
	if r.OutputHeight < 1 || r.OutputHeight > maxDim {
		a.Fail("output_height", "must be positive, got %d", r.OutputHeight)
	}
	if r.OutputWidth < 1 || r.OutputWidth > maxDim {
		a.Fail("output_width", "must be positive, got %d", r.OutputWidth)
	}
	if r.SamplingRatio = a.Int("sampling_ratio", 0); r.SamplingRatio < 0 || r.SamplingRatio > 1<<10 {
		a.Fail("sampling_ratio", "must be in [0, 1024], got %d", r.SamplingRatio)
	}
	r.SpatialScale = a.Float("spatial_scale", 1)
	def := "half_pixel"
	if opset < 16 {
		def = "output_half_pixel"
	}
	ctm := a.String("coordinate_transformation_mode", def)
	r.HalfPixel = a.OneOf("coordinate_transformation_mode", ctm, "half_pixel", "output_half_pixel") == "half_pixel"
	return r, a.Err()
}

// MaxRoiPoolAttrs are MaxRoiPool's attributes.
type MaxRoiPoolAttrs struct {
	// PooledShape is "pooled_shape" (required): two positive sizes, the
	// output's height and width.
	PooledShape [2]int64
	// SpatialScale is "spatial_scale" (1 by default).
	SpatialScale float32
}

// ParseMaxRoiPoolAttrs reads a MaxRoiPool node's attributes.
func ParseMaxRoiPoolAttrs(n *ir.Node, opset int64) (MaxRoiPoolAttrs, error) {
	a := AttrsOf(n)
	ps := a.Ints("pooled_shape", nil)
	m := MaxRoiPoolAttrs{SpatialScale: a.Float("spatial_scale", 1)}
	if len(ps) != 2 || ps[0] <= 0 || ps[1] <= 0 {
		a.Fail("pooled_shape", "want two positive sizes, got %v", ps)
	} else {
		m.PooledShape = [2]int64{ps[0], ps[1]}
	}
	return m, a.Err()
}
