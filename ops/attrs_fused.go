package ops

import (
	"math"

	"github.com/kilnai/kiln/ir"
)

// Typed attributes of kiln's fused operators (domain "kiln", written by
// the optimizer; their kernels are in ops/nn): the activation epilogue of
// FusedConv, FusedMatMul, QConv and QMatMul, and Attention's scale, read
// by the CPU kernels and the CUDA kernels alike.

// FusedActivations are the values of a fused operator's "activation"
// attribute ("" for none), as ops/nn's Act* constants spell them.
var FusedActivations = []string{"", "Relu", "Clip", "Sigmoid", "SiLU", "HardSwish", "LeakyRelu", "HardSigmoid", "Gelu", "GeluTanh"}

// EpilogueAttrs are a fused operator's activation: "activation" (none by
// default; one of FusedActivations) and its "activation_params", P0 and
// P1 (Clip's bounds, -Inf and +Inf by default, an empty range refused;
// LeakyRelu's slope, 0.01 by default; HardSigmoid's alpha and beta, 0.2
// and 0.5 by default; 0 for the others).
type EpilogueAttrs struct {
	Activation string
	P0, P1     float32
}

// ReadEpilogueAttrs reads a fused operator's activation through a,
// recording the first bad value in a.
func ReadEpilogueAttrs(a *Attrs) EpilogueAttrs {
	e := EpilogueAttrs{Activation: a.OneOf("activation", a.String("activation", ""), FusedActivations...)}
	var def []float32
	switch e.Activation {
	case "Clip":
		def = []float32{float32(math.Inf(-1)), float32(math.Inf(1))}
	case "LeakyRelu":
		def = []float32{0.01, 0}
	case "HardSigmoid":
		def = []float32{0.2, 0.5}
	}
	p := a.Floats("activation_params", nil)
	if p == nil {
		p = def
	}
	if len(p) > 0 {
		e.P0 = p[0]
	}
	if len(p) > 1 {
		e.P1 = p[1]
	}
	if e.Activation == "Clip" && !(e.P0 <= e.P1) {
		a.Fail("activation_params", "clip range [%g, %g] is empty", e.P0, e.P1)
	}
	return e
}

// ParseEpilogueAttrs reads a fused operator node's activation.
func ParseEpilogueAttrs(n *ir.Node) (EpilogueAttrs, error) {
	a := AttrsOf(n)
	e := ReadEpilogueAttrs(a)
	return e, a.Err()
}

// FusedAttentionAttrs are the attributes of kiln's Attention.
type FusedAttentionAttrs struct {
	// Scale is "scale" (1 by default): the factor of Q*K^T.
	Scale float32
}

// ParseFusedAttentionAttrs reads a kiln Attention node's attributes.
func ParseFusedAttentionAttrs(n *ir.Node, opset int64) (FusedAttentionAttrs, error) {
	a := AttrsOf(n)
	return FusedAttentionAttrs{Scale: a.Float("scale", 1)}, a.Err()
}

// FusedMatMulAttrs are kiln's FusedMatMul's attributes: its epilogue.
type FusedMatMulAttrs struct {
	EpilogueAttrs
}

// ParseFusedMatMulAttrs reads a kiln FusedMatMul node's attributes.
func ParseFusedMatMulAttrs(n *ir.Node, opset int64) (FusedMatMulAttrs, error) {
	e, err := ParseEpilogueAttrs(n)
	return FusedMatMulAttrs{EpilogueAttrs: e}, err
}

// FusedConvAttrs are kiln's FusedConv's attributes: a Conv's (the window
// and group, ConvAttrs) and the epilogue.
type FusedConvAttrs struct {
	ConvAttrs
	EpilogueAttrs
}

// readConvAttrs reads a convolution's window and group through a.
func readConvAttrs(a *Attrs) ConvAttrs {
	return ConvAttrs{WindowAttrs: ReadWindowAttrs(a), Group: a.Int("group", 1)}
}

// checkGroup records a non-positive group in a.
func checkGroup(a *Attrs, g int64) {
	if g < 1 {
		a.Fail("group", "must be positive, got %d", g)
	}
}

// ParseFusedConvAttrs reads a kiln FusedConv node's attributes.
func ParseFusedConvAttrs(n *ir.Node, opset int64) (FusedConvAttrs, error) {
	a := AttrsOf(n)
	c := FusedConvAttrs{ConvAttrs: readConvAttrs(a), EpilogueAttrs: ReadEpilogueAttrs(a)}
	checkGroup(a, c.Group)
	return c, a.Err()
}

// QConvAttrs are kiln's QConv's attributes: a Conv's, the epilogue and
// the required "x_scale", the input's quantization scale (a positive
// finite float).
type QConvAttrs struct {
	ConvAttrs
	EpilogueAttrs
	XScale float32
}

// readQScale reads the required quantization scale name: positive and
// finite (1 when bad, the error recorded in a).
func readQScale(a *Attrs, name string) float32 {
	if !a.Has(name) {
		a.Fail(name, "is required")
		return 1
	}
	v := a.Float(name, 1)
	if !(v > 0) || math.IsInf(float64(v), 1) {
		a.Fail(name, "must be a positive finite float, got %g", v)
		return 1
	}
	return v
}

// ParseQConvAttrs reads a kiln QConv node's attributes.
func ParseQConvAttrs(n *ir.Node, opset int64) (QConvAttrs, error) {
	a := AttrsOf(n)
	c := QConvAttrs{ConvAttrs: readConvAttrs(a), EpilogueAttrs: ReadEpilogueAttrs(a)}
	c.XScale = readQScale(a, "x_scale")
	checkGroup(a, c.Group)
	return c, a.Err()
}

// QMatMulAttrs are kiln's QMatMul's attributes: the epilogue and the
// required "a_scale", input A's quantization scale (a positive finite
// float).
type QMatMulAttrs struct {
	EpilogueAttrs
	AScale float32
}

// ParseQMatMulAttrs reads a kiln QMatMul node's attributes.
func ParseQMatMulAttrs(n *ir.Node, opset int64) (QMatMulAttrs, error) {
	a := AttrsOf(n)
	q := QMatMulAttrs{EpilogueAttrs: ReadEpilogueAttrs(a)}
	q.AScale = readQScale(a, "a_scale")
	return q, a.Err()
}

// MultiHeadAttentionAttrs are kiln's MultiHeadAttention's attributes.
type MultiHeadAttentionAttrs struct {
	// NumHeads is the required "num_heads", positive.
	NumHeads int64
	// Scale is "scale" when ScaleSet; without it the kernel scales by
	// 1/sqrt(head size).
	Scale    float32
	ScaleSet bool
}

// ParseMultiHeadAttentionAttrs reads a kiln MultiHeadAttention node's
// attributes.
func ParseMultiHeadAttentionAttrs(n *ir.Node, opset int64) (MultiHeadAttentionAttrs, error) {
	a := AttrsOf(n)
	m := MultiHeadAttentionAttrs{NumHeads: a.Int("num_heads", 0), Scale: a.Float("scale", 0), ScaleSet: a.Has("scale")}
	if m.NumHeads <= 0 {
		a.Fail("num_heads", "value %d, want a positive head count", m.NumHeads)
	}
	return m, a.Err()
}

// ParseSkipLayerNormAttrs reads a kiln SkipLayerNormalization node's
// attributes: "epsilon" (1e-5 by default), not negative.
func ParseSkipLayerNormAttrs(n *ir.Node, opset int64) (EpsilonAttrs, error) {
	a := AttrsOf(n)
	e := EpsilonAttrs{Epsilon: a.Float("epsilon", 1e-5)}
	if !(e.Epsilon >= 0) {
		a.Fail("epsilon", "value %g is negative", e.Epsilon)
	}
	return e, a.Err()
}
