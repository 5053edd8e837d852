package ops

import "github.com/kilnai/kiln/ir"

// Typed attributes of NonMaxSuppression, DFT, STFT and GridSample
// (ops/image) and Einsum (ops/nn), read by the CPU kernels and the CUDA
// kernels alike (see Def.Attrs).

// NMSAttrs are NonMaxSuppression's attributes.
type NMSAttrs struct {
	// CenterPointBox is "center_point_box" (0 by default; 0 or 1): boxes
	// are [x_center, y_center, width, height] instead of two corners.
	CenterPointBox bool
}

// ParseNMSAttrs reads a NonMaxSuppression node's attributes.
func ParseNMSAttrs(n *ir.Node, opset int64) (NMSAttrs, error) {
	a := AttrsOf(n)
	c := a.Int("center_point_box", 0)
	if c != 0 && c != 1 {
		a.Fail("center_point_box", "must be 0 or 1, got %d", c)
	}
	return NMSAttrs{CenterPointBox: c == 1}, a.Err()
}

// DFTAttrs are DFT's attributes.
type DFTAttrs struct {
	// Axis is "axis" before opset 20 (1 by default), possibly negative,
	// counting the trailing complex axis in the rank; from opset 20 the
	// axis is input 2 (AxisInput, -2 when absent) and Axis is -2.
	Axis int64
	// AxisInput is set from opset 20.
	AxisInput bool
	// Inverse is "inverse" (0 by default; any other value is 1).
	Inverse bool
	// Onesided is "onesided" (0 by default; any other value is 1): only
	// the first half of the bins (plus one) of a real signal.
	Onesided bool
}

// ParseDFTAttrs reads a DFT node's attributes.
func ParseDFTAttrs(n *ir.Node, opset int64) (DFTAttrs, error) {
	a := AttrsOf(n)
	d := DFTAttrs{Axis: -2, AxisInput: opset >= 20}
	if !d.AxisInput {
		d.Axis = a.Int("axis", 1)
	}
	d.Inverse = a.Int("inverse", 0) != 0
	d.Onesided = a.Int("onesided", 0) != 0
	return d, a.Err()
}

// STFTAttrs are STFT's attributes.
type STFTAttrs struct {
	// Onesided is "onesided" (1 by default; any other value than 0 is 1).
	Onesided bool
}

// ParseSTFTAttrs reads an STFT node's attributes.
func ParseSTFTAttrs(n *ir.Node, opset int64) (STFTAttrs, error) {
	a := AttrsOf(n)
	return STFTAttrs{Onesided: a.Int("onesided", 1) != 0}, a.Err()
}

// GridSampleAttrs are GridSample's attributes.
type GridSampleAttrs struct {
	// Mode is "mode", normalized: "linear" (opset 16's "bilinear", and
	// the default), "nearest" or "cubic" (opset 16's "bicubic"); either
	// spelling is read at every opset.
	Mode string
	// PaddingMode is "padding_mode" (zeros by default): zeros, border or
	// reflection.
	PaddingMode string
	// AlignCorners is "align_corners" (0 by default; any other value is
	// 1).
	AlignCorners bool
}

// ParseGridSampleAttrs reads a GridSample node's attributes.
func ParseGridSampleAttrs(n *ir.Node, opset int64) (GridSampleAttrs, error) {
	a := AttrsOf(n)
	g := GridSampleAttrs{Mode: "linear"}
	def := "bilinear"
	if opset >= 20 {
		def = "linear"
	}
	switch m := a.String("mode", def); m {
	case "bilinear", "linear":
	case "nearest":
		g.Mode = "nearest"
	case "bicubic", "cubic":
		g.Mode = "cubic"
	default:
		a.Fail("mode", "unsupported value %q", m)
	}
	g.PaddingMode = a.String("padding_mode", "zeros")
	if !contains([]string{"zeros", "border", "reflection"}, g.PaddingMode) {
		a.Fail("padding_mode", "unsupported value %q", g.PaddingMode)
	}
	g.AlignCorners = a.Int("align_corners", 0) != 0
	return g, a.Err()
}

// EinsumAttrs are Einsum's attributes.
type EinsumAttrs struct {
	// Equation is "equation" as given (white space included); its syntax
	// is checked by the kernels, which parse it.
	Equation string
}

// ParseEinsumAttrs reads an Einsum node's attributes.
func ParseEinsumAttrs(n *ir.Node, opset int64) (EinsumAttrs, error) {
	a := AttrsOf(n)
	return EinsumAttrs{Equation: a.String("equation", "")}, a.Err()
}
