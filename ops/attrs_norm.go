package ops

import (
	"math"
	"slices"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Typed attributes of the normalization ops (ops/norm), read by the CPU
// kernels and the CUDA kernels alike (see Def.Attrs).

// LayerNormAttrs are the attributes of LayerNormalization (opset 17) and of
// kiln's fused LayerNormalization.
type LayerNormAttrs struct {
	// Axis is "axis" (-1 by default): the first normalized dimension,
	// possibly negative.
	Axis int64
	// Epsilon is "epsilon" (1e-5 by default), not negative.
	Epsilon float32
	// StashType is "stash_type" (float32 by default), the type of the
	// mean and inverse standard deviation outputs: a float type.
	StashType tensor.DType
}

// ParseLayerNormAttrs reads a LayerNormalization node's attributes.
func ParseLayerNormAttrs(n *ir.Node, opset int64) (LayerNormAttrs, error) {
	a := AttrsOf(n)
	l := LayerNormAttrs{Axis: a.Int("axis", -1), Epsilon: a.Float("epsilon", 1e-5)}
	if l.Epsilon < 0 {
		a.Fail("epsilon", "value %g is negative", float64(l.Epsilon))
	}
	st := a.Int("stash_type", 1)
	if !isFloat(tensor.DType(st)) {
		a.Fail("stash_type", "value %d is not a float type", st)
	}
	l.StashType = tensor.DType(st)
	return l, a.Err()
}

func isFloat(dt tensor.DType) bool {
	return dt == tensor.Float32 || dt == tensor.Float64 || dt == tensor.Float16 || dt == tensor.BFloat16
}

// BatchNormAttrs are BatchNormalization's attributes.
type BatchNormAttrs struct {
	// Epsilon is "epsilon" (1e-5 by default), not negative.
	Epsilon float32
	// Momentum is "momentum" (0.9 by default), for the running statistics
	// of training mode.
	Momentum float32
	// Training is set in training mode: "training_mode" 1 from opset 14
	// (0 or 1); before it, "is_test" 0 (the default) with more than one
	// output named.
	Training bool
	// LegacyOutputs is set before opset 14, whose training outputs are Y,
	// mean, var, saved_mean and saved_var.
	LegacyOutputs bool
}

// ParseBatchNormAttrs reads a BatchNormalization node's attributes.
func ParseBatchNormAttrs(n *ir.Node, opset int64) (BatchNormAttrs, error) {
	a := AttrsOf(n)
	b := BatchNormAttrs{Epsilon: a.Float("epsilon", 1e-5), Momentum: a.Float("momentum", 0.9), LegacyOutputs: opset < 14}
	if b.Epsilon < 0 || math.IsNaN(float64(b.Epsilon)) {
		a.Fail("epsilon", "value %g is negative", float64(b.Epsilon))
	}
	if opset >= 14 {
		tm := a.Int("training_mode", 0)
		if tm != 0 && tm != 1 {
			a.Fail("training_mode", "value %d, want 0 or 1", tm)
		}
		b.Training = tm == 1
	} else {
		nout := 0
		for i, o := range n.Outputs {
			if o != nil && o.Name != "" {
				nout = i + 1
			}
		}
		b.Training = nout > 1 && a.Int("is_test", 0) == 0
	}
	if opset < 9 {
		// spatial=0 (per-activation statistics) is recognized from the
		// parameter shapes at run time; the attribute is only checked.
		a.Int("spatial", 1)
	}
	return b, a.Err()
}

// EpsilonAttrs are the attributes of an op whose one attribute is
// "epsilon" (InstanceNormalization).
type EpsilonAttrs struct {
	// Epsilon is "epsilon" (1e-5 by default), not negative.
	Epsilon float32
}

// ParseInstanceNormAttrs reads an InstanceNormalization node's attributes.
func ParseInstanceNormAttrs(n *ir.Node, opset int64) (EpsilonAttrs, error) {
	a := AttrsOf(n)
	e := EpsilonAttrs{Epsilon: a.Float("epsilon", 1e-5)}
	if e.Epsilon < 0 {
		a.Fail("epsilon", "value %g is negative", float64(e.Epsilon))
	}
	return e, a.Err()
}

// LRNAttrs are LRN's attributes.
type LRNAttrs struct {
	// Size is "size" (required), the number of channels summed, >= 1.
	Size int
	// Alpha, Beta and Bias are "alpha" (1e-4), "beta" (0.75) and "bias"
	// (1).
	Alpha, Beta, Bias float32
}

// ParseLRNAttrs reads an LRN node's attributes.
func ParseLRNAttrs(n *ir.Node, opset int64) (LRNAttrs, error) {
	a := AttrsOf(n)
	if !a.Has("size") {
		a.Fail("size", "required attribute is missing")
	}
	size := a.Int("size", 1)
	if size < 1 || size > 1<<20 {
		a.Fail("size", "value %d, want >= 1", size)
	}
	l := LRNAttrs{Size: int(size), Alpha: a.Float("alpha", 1e-4), Beta: a.Float("beta", 0.75), Bias: a.Float("bias", 1)}
	return l, a.Err()
}

// LossAttrs are the attributes of NegativeLogLikelihoodLoss and
// SoftmaxCrossEntropyLoss.
type LossAttrs struct {
	// Reduction is "reduction": "none", "sum" or "mean" (the default).
	Reduction string
	// HasIgnore says that "ignore_index" is given; IgnoreIndex is it.
	HasIgnore   bool
	IgnoreIndex int64
}

// ParseLossAttrs reads a NegativeLogLikelihoodLoss or
// SoftmaxCrossEntropyLoss node's attributes.
func ParseLossAttrs(n *ir.Node, opset int64) (LossAttrs, error) {
	a := AttrsOf(n)
	l := LossAttrs{Reduction: a.OneOf("reduction", a.String("reduction", "mean"), "none", "sum", "mean")}
	l.HasIgnore = a.Has("ignore_index")
	l.IgnoreIndex = a.Int("ignore_index", 0)
	return l, a.Err()
}

// GroupNormAttrs are GroupNormalization's attributes.
type GroupNormAttrs struct {
	// Epsilon is "epsilon" (1e-5 by default), not negative.
	Epsilon float32
	// NumGroups is "num_groups" (required), in [1, 2^30].
	NumGroups int
	// PerGroup is set before opset 21, whose scale and bias have one
	// element per group (from 21, one per channel).
	PerGroup bool
}

// ParseGroupNormAttrs reads a GroupNormalization node's attributes.
func ParseGroupNormAttrs(n *ir.Node, opset int64) (GroupNormAttrs, error) {
	a := AttrsOf(n)
	g := GroupNormAttrs{Epsilon: a.Float("epsilon", 1e-5), PerGroup: opset < 21}
	if g.Epsilon < 0 {
		a.Fail("epsilon", "value %g is negative", float64(g.Epsilon))
	}
	if !a.Has("num_groups") {
		a.Fail("num_groups", "required attribute is missing")
	}
	ng := a.Int("num_groups", 1)
	if ng < 1 || ng > 1<<30 {
		a.Fail("num_groups", "value %d, want >= 1", ng)
	}
	g.NumGroups = int(ng)
	if st := a.Int("stash_type", 1); !isFloat(tensor.DType(st)) {
		a.Fail("stash_type", "value %d is not a float type", st)
	}
	return g, a.Err()
}

// LpNormAttrs are LpNormalization's attributes.
type LpNormAttrs struct {
	// Axis is "axis" (-1 by default), possibly negative.
	Axis int64
	// P is "p", the norm's order: 1 or 2 (the default).
	P int64
}

// ParseLpNormAttrs reads an LpNormalization node's attributes.
func ParseLpNormAttrs(n *ir.Node, opset int64) (LpNormAttrs, error) {
	a := AttrsOf(n)
	l := LpNormAttrs{Axis: a.Int("axis", -1), P: a.Int("p", 2)}
	if l.P != 1 && l.P != 2 {
		a.Fail("p", "value %d, want 1 or 2", l.P)
	}
	return l, a.Err()
}

// MVNAttrs are MeanVarianceNormalization's attributes.
type MVNAttrs struct {
	// Axes is "axes" ([0, 2, 3] by default); opset 1's
	// "across_channels" 1 makes it [0, 1, 2, 3].
	Axes []int64
}

// ParseMVNAttrs reads a MeanVarianceNormalization node's attributes.
func ParseMVNAttrs(n *ir.Node, opset int64) (MVNAttrs, error) {
	a := AttrsOf(n)
	m := MVNAttrs{Axes: slices.Clone(a.Ints("axes", []int64{0, 2, 3}))}
	if opset < 9 && a.Int("across_channels", 0) == 1 {
		m.Axes = []int64{0, 1, 2, 3}
	}
	return m, a.Err()
}
