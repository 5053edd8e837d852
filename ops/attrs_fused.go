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
