package ops

import (
	"slices"

	"github.com/kilnai/kiln/ir"
)

// Typed attributes of the reductions, ArgMax and ArgMin, TopK and CumSum
// (ops/norm), read by the CPU kernels and the CUDA kernels alike (see
// Def.Attrs).

// flag reads a 0/1 integer attribute, failing on other values.
func flag(a *Attrs, name string, def int64) bool {
	v := a.Int(name, def)
	if v != 0 && v != 1 {
		a.Fail(name, "value %d, want 0 or 1", v)
	}
	return v == 1
}

// ReduceAttrs are the attributes of ReduceSum, ReduceMean, ReduceMax,
// ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceLogSum,
// ReduceLogSumExp and ReduceSumSquare.
type ReduceAttrs struct {
	// Axes is "axes" (nil when absent or empty: every axis, unless
	// NoopWithEmptyAxes). From the opset where the axes are input 1
	// (AxesInput) the attribute is not in the spec; an axes attribute is
	// still honoured when the input is absent.
	Axes []int64
	// AxesInput is set from the opset where the axes are input 1: 13 for
	// ReduceSum, 18 for the others.
	AxesInput bool
	// KeepDims is "keepdims" (1 by default; 0 or 1).
	KeepDims bool
	// NoopWithEmptyAxes is "noop_with_empty_axes" (0 by default; 0 or 1):
	// with no axes the op is the identity instead of reducing every axis.
	NoopWithEmptyAxes bool
}

// ParseReduceAttrs reads a Reduce* node's attributes.
func ParseReduceAttrs(n *ir.Node, opset int64) (ReduceAttrs, error) {
	a := AttrsOf(n)
	r := ReduceAttrs{AxesInput: opset >= 18 || (n.OpType == "ReduceSum" && opset >= 13)}
	if ax := a.Ints("axes", nil); len(ax) > 0 {
		r.Axes = slices.Clone(ax)
	}
	r.KeepDims = flag(a, "keepdims", 1)
	r.NoopWithEmptyAxes = flag(a, "noop_with_empty_axes", 0)
	return r, a.Err()
}

// ArgReduceAttrs are the attributes of ArgMax and ArgMin.
type ArgReduceAttrs struct {
	// Axis is "axis" (0 by default), possibly negative.
	Axis int64
	// KeepDims is "keepdims" (1 by default; 0 or 1).
	KeepDims bool
	// SelectLastIndex is "select_last_index" (from opset 12; 0 by
	// default; 0 or 1): ties give the last index instead of the first.
	SelectLastIndex bool
}

// ParseArgReduceAttrs reads an ArgMax or ArgMin node's attributes.
func ParseArgReduceAttrs(n *ir.Node, opset int64) (ArgReduceAttrs, error) {
	a := AttrsOf(n)
	r := ArgReduceAttrs{Axis: a.Int("axis", 0)}
	r.KeepDims = flag(a, "keepdims", 1)
	r.SelectLastIndex = flag(a, "select_last_index", 0)
	return r, a.Err()
}

// TopKAttrs are TopK's attributes.
type TopKAttrs struct {
	// Axis is "axis" (-1 by default), possibly negative.
	Axis int64
	// K is "k", required before opset 10 (not negative); -1 from opset 10,
	// where K is input 1.
	K int64
	// Largest is "largest" (from opset 11; 1 by default; 0 or 1): the
	// largest elements, else the smallest.
	Largest bool
	// Sorted is "sorted" (from opset 11; 1 by default; 0 or 1). Unsorted
	// leaves the order unspecified, so the sorted order is one.
	Sorted bool
}

// ParseTopKAttrs reads a TopK node's attributes.
func ParseTopKAttrs(n *ir.Node, opset int64) (TopKAttrs, error) {
	a := AttrsOf(n)
	t := TopKAttrs{Axis: a.Int("axis", -1), K: -1}
	if opset < 10 {
		if !a.Has("k") {
			a.Fail("k", "required attribute is missing")
		}
		t.K = a.Int("k", 0)
		if t.K < 0 {
			a.Fail("k", "value %d is negative", t.K)
		}
	}
	t.Largest = flag(a, "largest", 1)
	t.Sorted = flag(a, "sorted", 1)
	return t, a.Err()
}

// CumSumAttrs are CumSum's attributes (the axis is input 1).
type CumSumAttrs struct {
	// Exclusive is "exclusive" (0 by default; 0 or 1): each sum leaves
	// its own element out.
	Exclusive bool
	// Reverse is "reverse" (0 by default; 0 or 1): sums run from the end.
	Reverse bool
}

// ParseCumSumAttrs reads a CumSum node's attributes.
func ParseCumSumAttrs(n *ir.Node, opset int64) (CumSumAttrs, error) {
	a := AttrsOf(n)
	c := CumSumAttrs{Exclusive: flag(a, "exclusive", 0), Reverse: flag(a, "reverse", 0)}
	return c, a.Err()
}
