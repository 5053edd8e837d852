package ops

import (
	"math"
	"strings"

	"github.com/kilnai/kiln/ir"
)

// Typed attributes of Resize and the deprecated Upsample (ops/image), read
// by the CPU kernel and the CUDA kernels alike (see Def.Attrs).

// ResizeAttrs are Resize's attributes.
type ResizeAttrs struct {
	// Legacy is set at opset 10: the scales are input 1 (no roi, no
	// sizes), the coordinates asymmetric and nearest takes Upsample's rule
	// (floor when enlarging, ceil when shrinking); only Mode is read.
	Legacy bool
	// Mode is "mode" (nearest by default), lower case, "bilinear" and
	// "trilinear" read as "linear", "bicubic" as "cubic": "nearest",
	// "linear" or "cubic" (cubic from opset 11).
	Mode string
	// CoordinateTransformationMode is "coordinate_transformation_mode"
	// (from opset 11; half_pixel by default): half_pixel,
	// half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric,
	// tf_half_pixel_for_nn or tf_crop_and_resize, at any opset from 11
	// (ONNX adds half_pixel_symmetric in 19 and drops tf_half_pixel_for_nn
	// in 13; converters still write it); "asymmetric" at opset 10.
	CoordinateTransformationMode string
	// NearestMode is "nearest_mode" (from opset 11; round_prefer_floor by
	// default): round_prefer_floor, round_prefer_ceil, floor or ceil; ""
	// at opset 10 (Legacy's rule).
	NearestMode string
	// CubicCoeffA is "cubic_coeff_a" (-0.75 by default).
	CubicCoeffA float32
	// ExcludeOutside is "exclude_outside" (0 by default; any other value
	// is 1): cubic taps outside the input get weight 0, the others
	// renormalized.
	ExcludeOutside bool
	// ExtrapolationValue is "extrapolation_value" (0 by default): the
	// value of points outside the input under tf_crop_and_resize.
	ExtrapolationValue float32
	// Antialias is "antialias" (ONNX opset 18; 0 by default; any other
	// value is 1): linear and cubic filters widened when shrinking; not
	// with mode nearest.
	Antialias bool
	// Axes is "axes" (ONNX opset 18; nil: every axis), no axis repeated:
	// the axes that roi, scales and sizes give.
	Axes []int64
	// KeepAspectRatioPolicy is "keep_aspect_ratio_policy" (ONNX opset
	// 18; stretch by default): stretch, not_larger or not_smaller.
	KeepAspectRatioPolicy string
}

// Resize's coordinate transformation modes and nearest modes.
var (
	resizeCoordModes   = []string{"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"}
	resizeNearestModes = []string{"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}
)

// readResizeMode reads "mode", normalized; cubic only where allowed.
func readResizeMode(a *Attrs, cubic bool) string {
	switch m := strings.ToLower(a.String("mode", "nearest")); m {
	case "nearest":
		return "nearest"
	case "linear", "bilinear", "trilinear":
		return "linear"
	case "cubic", "bicubic":
		if cubic {
			return "cubic"
		}
		a.Fail("mode", "unsupported value %q in this opset", m)
	default:
		a.Fail("mode", "unsupported value %q (want nearest, linear or cubic)", m)
	}
	return "nearest"
}

// ParseResizeAttrs reads a Resize node's attributes (opsets 10 to 19;
// the attributes ONNX adds in 18 and 19 are read from 11, as the CPU
// always did).
func ParseResizeAttrs(n *ir.Node, opset int64) (ResizeAttrs, error) {
	a := AttrsOf(n)
	r := ResizeAttrs{CubicCoeffA: -0.75, KeepAspectRatioPolicy: "stretch"}
	if opset < 11 {
		r.Legacy, r.CoordinateTransformationMode = true, "asymmetric"
		r.Mode = readResizeMode(a, false)
		return r, a.Err()
	}
	r.Mode = readResizeMode(a, true)
	r.CoordinateTransformationMode = a.String("coordinate_transformation_mode", "half_pixel")
	if !contains(resizeCoordModes, r.CoordinateTransformationMode) {
		a.Fail("coordinate_transformation_mode", "unsupported value %q", r.CoordinateTransformationMode)
	}
	r.NearestMode = a.String("nearest_mode", "round_prefer_floor")
	if !contains(resizeNearestModes, r.NearestMode) {
		a.Fail("nearest_mode", "unsupported value %q", r.NearestMode)
	}
	r.CubicCoeffA = a.Float("cubic_coeff_a", -0.75)
	r.ExcludeOutside = a.Int("exclude_outside", 0) != 0
	r.ExtrapolationValue = a.Float("extrapolation_value", 0)
	r.Antialias = a.Int("antialias", 0) != 0
	if r.Antialias && r.Mode == "nearest" {
		a.Fail("antialias", "is not supported with mode nearest")
	}
	if a.Has("axes") {
		r.Axes = append([]int64{}, a.Ints("axes", nil)...)
		seen := map[int64]bool{}
		for _, ax := range r.Axes {
			if seen[ax] {
				a.Fail("axes", "repeated axis %d in %v", ax, r.Axes)
			}
			seen[ax] = true
		}
	}
	r.KeepAspectRatioPolicy = a.String("keep_aspect_ratio_policy", "stretch")
	if !contains([]string{"stretch", "not_larger", "not_smaller"}, r.KeepAspectRatioPolicy) {
		a.Fail("keep_aspect_ratio_policy", "unsupported value %q", r.KeepAspectRatioPolicy)
	}
	return r, a.Err()
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// UpsampleAttrs are Upsample's attributes (opsets 7 to 9; Resize-10's
// rules: asymmetric coordinates, Upsample's nearest rule).
type UpsampleAttrs struct {
	// Mode is "mode" (nearest by default), normalized as ResizeAttrs.Mode:
	// "nearest" or "linear".
	Mode string
	// Scales is "scales", required before opset 9 (one per dim, positive
	// and finite); nil from opset 9, where the scales are input 1.
	Scales []float32
}

// ParseUpsampleAttrs reads an Upsample node's attributes.
func ParseUpsampleAttrs(n *ir.Node, opset int64) (UpsampleAttrs, error) {
	a := AttrsOf(n)
	u := UpsampleAttrs{Mode: readResizeMode(a, false)}
	if opset < 9 {
		u.Scales = append([]float32{}, a.Floats("scales", nil)...)
		if len(u.Scales) == 0 {
			a.Fail("scales", "required attribute is missing")
		}
		for _, v := range u.Scales {
			if !(v > 0) || math.IsInf(float64(v), 0) {
				a.Fail("scales", "invalid scale %g", v)
			}
		}
	}
	return u, a.Err()
}
