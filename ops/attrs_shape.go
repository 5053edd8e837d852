package ops

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Typed attributes of the data movement ops (ops/shape), read by the CPU
// kernels and the CUDA kernels alike (see Def.Attrs).

// TransposeAttrs are Transpose's attributes.
type TransposeAttrs struct {
	// Perm is "perm", a permutation of 0..len(Perm)-1; nil when absent:
	// the dimensions reversed (see PermFor).
	Perm []int64
}

// ParseTransposeAttrs reads a Transpose node's attributes.
func ParseTransposeAttrs(n *ir.Node, opset int64) (TransposeAttrs, error) {
	a := AttrsOf(n)
	t := TransposeAttrs{Perm: a.Ints("perm", nil)}
	if t.Perm != nil && !isPerm(t.Perm) {
		a.Fail("perm", "%v is not a permutation", t.Perm)
	}
	return t, a.Err()
}

func isPerm(p []int64) bool {
	seen := make([]bool, len(p))
	for _, v := range p {
		if v < 0 || v >= int64(len(p)) || seen[v] {
			return false
		}
		seen[v] = true
	}
	return true
}

// PermFor returns the permutation for an input of the given rank: Perm, or
// the dimensions reversed when Perm is nil. A Perm of another length (or
// not a permutation) is an error wrapping ErrBadInput.
func (t TransposeAttrs) PermFor(rank int) ([]int, error) {
	p := make([]int, rank)
	if t.Perm == nil {
		for i := range p {
			p[i] = rank - 1 - i
		}
		return p, nil
	}
	if len(t.Perm) != rank || !isPerm(t.Perm) {
		return nil, BadInput("Transpose: perm %v for rank %d", t.Perm, rank)
	}
	for i, v := range t.Perm {
		p[i] = int(v)
	}
	return p, nil
}

// AxisAttrs are the attributes of an op whose one attribute is "axis":
// Gather and GatherElements (default 0), OneHot (default -1).
type AxisAttrs struct {
	// Axis is "axis", possibly negative (counted from the end); the op
	// checks it against the rank (NormAxis).
	Axis int64
}

// ParseGatherAttrs reads a Gather or GatherElements node's attributes.
func ParseGatherAttrs(n *ir.Node, opset int64) (AxisAttrs, error) {
	a := AttrsOf(n)
	return AxisAttrs{Axis: a.Int("axis", 0)}, a.Err()
}

// ParseOneHotAttrs reads a OneHot node's attributes.
func ParseOneHotAttrs(n *ir.Node, opset int64) (AxisAttrs, error) {
	a := AttrsOf(n)
	return AxisAttrs{Axis: a.Int("axis", -1)}, a.Err()
}

// GatherNDAttrs are GatherND's attributes.
type GatherNDAttrs struct {
	// BatchDims is "batch_dims" (from opset 12; 0 by default), in [0, 64].
	BatchDims int
}

// ParseGatherNDAttrs reads a GatherND node's attributes.
func ParseGatherNDAttrs(n *ir.Node, opset int64) (GatherNDAttrs, error) {
	a := AttrsOf(n)
	b := a.Int("batch_dims", 0)
	if b < 0 || b > 64 {
		a.Fail("batch_dims", "must be in [0, 64], got %d", b)
	}
	return GatherNDAttrs{BatchDims: int(b)}, a.Err()
}

// ScatterElementsAttrs are the attributes of ScatterElements and of the
// deprecated Scatter.
type ScatterElementsAttrs struct {
	// Axis is "axis" (0 by default), possibly negative.
	Axis int64
	// Reduction is "reduction" of ScatterElements: "none" (the default;
	// always for Scatter and before opset 16), "add" or "mul" (from
	// opset 16), "max" or "min" (from opset 18). A value the opset does
	// not allow is an error; it is still set here.
	Reduction string
}

// ParseScatterElementsAttrs reads a ScatterElements or Scatter node's
// attributes.
func ParseScatterElementsAttrs(n *ir.Node, opset int64) (ScatterElementsAttrs, error) {
	a := AttrsOf(n)
	s := ScatterElementsAttrs{Axis: a.Int("axis", 0), Reduction: "none"}
	if n.OpType == "ScatterElements" {
		s.Reduction = scatterReduction(a, opset)
	}
	return s, a.Err()
}

// scatterReduction reads "reduction" of ScatterElements and ScatterND:
// "none" by default; opset 16 adds "add" and "mul", 18 "max" and "min".
func scatterReduction(a *Attrs, opset int64) string {
	allowed := []string{"none"}
	if opset >= 16 {
		allowed = append(allowed, "add", "mul")
	}
	if opset >= 18 {
		allowed = append(allowed, "max", "min")
	}
	return a.OneOf("reduction", a.String("reduction", "none"), allowed...)
}

// ScatterNDAttrs are ScatterND's attributes.
type ScatterNDAttrs struct {
	// Reduction is "reduction", as ScatterElementsAttrs.Reduction.
	Reduction string
}

// ParseScatterNDAttrs reads a ScatterND node's attributes.
func ParseScatterNDAttrs(n *ir.Node, opset int64) (ScatterNDAttrs, error) {
	a := AttrsOf(n)
	s := ScatterNDAttrs{Reduction: scatterReduction(a, opset)}
	return s, a.Err()
}

// DepthSpaceAttrs are the attributes of DepthToSpace and SpaceToDepth.
type DepthSpaceAttrs struct {
	// BlockSize is "blocksize" (required), in [1, 2^20].
	BlockSize int
	// CRD is DepthToSpace's "mode" "CRD" (column, row, depth); the default
	// "DCR" (depth, column, row) leaves it false. SpaceToDepth has no mode.
	CRD bool
}

// ParseDepthSpaceAttrs reads a DepthToSpace or SpaceToDepth node's
// attributes.
func ParseDepthSpaceAttrs(n *ir.Node, opset int64) (DepthSpaceAttrs, error) {
	a := AttrsOf(n)
	b := a.Int("blocksize", 0)
	if !a.Has("blocksize") {
		a.Fail("blocksize", "required attribute is missing")
	} else if b <= 0 || b > 1<<20 {
		a.Fail("blocksize", "must be positive, got %d", b)
	}
	d := DepthSpaceAttrs{BlockSize: int(b)}
	if n.OpType == "DepthToSpace" {
		d.CRD = a.OneOf("mode", a.String("mode", "DCR"), "DCR", "CRD") == "CRD"
	}
	return d, a.Err()
}

// PadAttrs are Pad's attributes.
type PadAttrs struct {
	// Mode is "mode": "constant" (the default), "reflect", "edge", or
	// "wrap" (from opset 19).
	Mode string
	// FromAttrs is set before opset 11, where the pads and the value are
	// attributes (Pads, Value); from opset 11 they are inputs.
	FromAttrs bool
	// Pads is "pads" ("paddings" in opset 1), required before opset 11:
	// the start of every axis, then the end of every axis.
	Pads []int64
	// Value is "value" before opset 11 (0 by default).
	Value float32
}

// ParsePadAttrs reads a Pad node's attributes.
func ParsePadAttrs(n *ir.Node, opset int64) (PadAttrs, error) {
	a := AttrsOf(n)
	modes := []string{"constant", "reflect", "edge"}
	if opset >= 19 {
		modes = append(modes, "wrap")
	}
	p := PadAttrs{Mode: a.OneOf("mode", a.String("mode", "constant"), modes...)}
	if opset < 11 {
		p.FromAttrs = true
		name := "pads"
		if opset < 2 && a.Has("paddings") {
			name = "paddings"
		}
		p.Pads = a.Ints(name, nil)
		if p.Pads == nil {
			a.Fail(name, "required attribute is missing")
		}
		p.Value = a.Float("value", 0)
	}
	return p, a.Err()
}

// TriluAttrs are Trilu's attributes.
type TriluAttrs struct {
	// Upper is "upper" (1 by default) not 0: keep the upper triangle.
	Upper bool
}

// ParseTriluAttrs reads a Trilu node's attributes.
func ParseTriluAttrs(n *ir.Node, opset int64) (TriluAttrs, error) {
	a := AttrsOf(n)
	return TriluAttrs{Upper: a.Int("upper", 1) != 0}, a.Err()
}

// EyeLikeAttrs are EyeLike's attributes.
type EyeLikeAttrs struct {
	// K is "k", the diagonal (0 by default, the main one).
	K int64
	// DType is "dtype", the output's element type; tensor.Undefined when
	// absent (the input's). A string or unknown type is an error.
	DType tensor.DType
}

// ParseEyeLikeAttrs reads an EyeLike node's attributes.
func ParseEyeLikeAttrs(n *ir.Node, opset int64) (EyeLikeAttrs, error) {
	a := AttrsOf(n)
	e := EyeLikeAttrs{K: a.Int("k", 0)}
	if a.Has("dtype") {
		e.DType = tensor.DType(a.Int("dtype", 0))
		if !e.DType.Valid() || e.DType == tensor.String {
			a.Fail("dtype", "unsupported type %v", e.DType)
		}
	}
	return e, a.Err()
}

// ReverseSequenceAttrs are ReverseSequence's attributes.
type ReverseSequenceAttrs struct {
	// BatchAxis and TimeAxis are "batch_axis" (1 by default) and
	// "time_axis" (0): 0 and 1 in some order.
	BatchAxis, TimeAxis int
}

// ParseReverseSequenceAttrs reads a ReverseSequence node's attributes.
func ParseReverseSequenceAttrs(n *ir.Node, opset int64) (ReverseSequenceAttrs, error) {
	a := AttrsOf(n)
	b, t := a.Int("batch_axis", 1), a.Int("time_axis", 0)
	if (b != 0 && b != 1) || (t != 0 && t != 1) || b == t {
		a.Fail("batch_axis", "batch_axis %d and time_axis %d must be 0 and 1 in some order", b, t)
	}
	return ReverseSequenceAttrs{BatchAxis: int(b), TimeAxis: int(t)}, a.Err()
}

// SliceAttrs are Slice's attributes (before opset 10; from opset 10 the
// starts, ends, axes and steps are inputs).
type SliceAttrs struct {
	// FromAttrs is set before opset 10.
	FromAttrs bool
	// Starts and Ends are "starts" and "ends" (required before opset 10,
	// of one length); Axes is "axes" (nil: the first len(Starts) axes), of
	// their length when given.
	Starts, Ends, Axes []int64
}

// ParseSliceAttrs reads a Slice node's attributes.
func ParseSliceAttrs(n *ir.Node, opset int64) (SliceAttrs, error) {
	if opset >= 10 {
		return SliceAttrs{}, nil
	}
	a := AttrsOf(n)
	s := SliceAttrs{FromAttrs: true, Starts: a.Ints("starts", nil), Ends: a.Ints("ends", nil), Axes: a.Ints("axes", nil)}
	if s.Starts == nil || s.Ends == nil {
		a.Fail("starts", "starts and ends are required")
	} else if len(s.Starts) != len(s.Ends) || (s.Axes != nil && len(s.Axes) != len(s.Starts)) {
		a.Fail("ends", "starts %v, ends %v and axes %v differ in length", s.Starts, s.Ends, s.Axes)
	}
	return s, a.Err()
}

// FlattenAttrs are Flatten's attributes.
type FlattenAttrs struct {
	// Axis is "axis" (1 by default), in [-rank, rank]: the dimensions
	// before it make the first output dimension.
	Axis int64
}

// ParseFlattenAttrs reads a Flatten node's attributes.
func ParseFlattenAttrs(n *ir.Node, opset int64) (FlattenAttrs, error) {
	a := AttrsOf(n)
	return FlattenAttrs{Axis: a.Int("axis", 1)}, a.Err()
}

// SqueezeAttrs are the attributes of Squeeze and Unsqueeze.
type SqueezeAttrs struct {
	// FromAttrs is set before opset 13, where the axes are the attribute
	// Axes; from 13 they are input 1.
	FromAttrs bool
	// Axes is "axes" before opset 13: required by Unsqueeze; nil for
	// Squeeze means every dimension of size 1.
	Axes []int64
}

// ParseSqueezeAttrs reads a Squeeze or Unsqueeze node's attributes.
func ParseSqueezeAttrs(n *ir.Node, opset int64) (SqueezeAttrs, error) {
	if opset >= 13 {
		return SqueezeAttrs{}, nil
	}
	a := AttrsOf(n)
	s := SqueezeAttrs{FromAttrs: true, Axes: a.Ints("axes", nil)}
	if n.OpType == "Unsqueeze" && s.Axes == nil {
		a.Fail("axes", "required attribute is missing")
	}
	return s, a.Err()
}

// ShapeAttrs are Shape's attributes.
type ShapeAttrs struct {
	// Start and End are "start" (0) and "end" (all) from opset 15, the
	// dimensions returned, possibly negative; before 15, 0 and 1<<62.
	Start, End int64
}

// ParseShapeAttrs reads a Shape node's attributes.
func ParseShapeAttrs(n *ir.Node, opset int64) (ShapeAttrs, error) {
	s := ShapeAttrs{End: 1 << 62}
	if opset < 15 {
		return s, nil
	}
	a := AttrsOf(n)
	s.Start, s.End = a.Int("start", 0), a.Int("end", 1<<62)
	return s, a.Err()
}

// OptionalAxisAttrs are the attributes of an op whose "axis" may be absent
// (Compress: the input flattened; Unique: the elements of the flattened
// input), and Unique's "sorted".
type OptionalAxisAttrs struct {
	// HasAxis says that "axis" is given; Axis is it (possibly negative).
	HasAxis bool
	Axis    int64
	// Sorted is Unique's "sorted" (1 by default) not 0.
	Sorted bool
}

// ParseCompressAttrs reads a Compress node's attributes.
func ParseCompressAttrs(n *ir.Node, opset int64) (OptionalAxisAttrs, error) {
	a := AttrsOf(n)
	return OptionalAxisAttrs{HasAxis: a.Has("axis"), Axis: a.Int("axis", 0)}, a.Err()
}

// ParseUniqueAttrs reads a Unique node's attributes.
func ParseUniqueAttrs(n *ir.Node, opset int64) (OptionalAxisAttrs, error) {
	a := AttrsOf(n)
	u := OptionalAxisAttrs{Sorted: a.Int("sorted", 1) != 0, Axis: a.Int("axis", 0), HasAxis: a.Has("axis")}
	return u, a.Err()
}
