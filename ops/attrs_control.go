package ops

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Typed attributes of the control-flow ops (ops/control: If, Loop, Scan)
// and the sequence and optional ops (ops/sequence). Only the CPU runs
// them (a CUDA build leaves them to the CPU); they are typed so that a
// default or a rule lives in one place (see Def.Attrs).

// IfAttrs are If's attributes: the required graphs "then_branch" and
// "else_branch".
type IfAttrs struct {
	Then, Else *ir.Graph
}

// ParseIfAttrs reads an If node's attributes.
func ParseIfAttrs(n *ir.Node, opset int64) (IfAttrs, error) {
	a := AttrsOf(n)
	r := IfAttrs{Then: a.RequireGraph("then_branch"), Else: a.RequireGraph("else_branch")}
	return r, a.Err()
}

// BodyAttrs are the attributes of Loop and SequenceMap: the required
// graph "body".
type BodyAttrs struct {
	Body *ir.Graph
}

// ParseBodyAttrs reads a Loop or SequenceMap node's attributes.
func ParseBodyAttrs(n *ir.Node, opset int64) (BodyAttrs, error) {
	a := AttrsOf(n)
	r := BodyAttrs{Body: a.RequireGraph("body")}
	return r, a.Err()
}

// ScanAttrs are Scan's attributes. How many entries the lists must have
// depends on the node's inputs and the body's outputs: the kernel checks
// it.
type ScanAttrs struct {
	// Body is the required graph "body".
	Body *ir.Graph
	// NumScanInputs is the required "num_scan_inputs", at least 1.
	NumScanInputs int64
	// Opset8 is set before opset 9: input 0 is sequence_lens, every input
	// and output has a batch axis 0, and the scan axes are 1; the
	// directions are "directions" (InputDirections), and the axes and
	// output directions are not read.
	Opset8 bool
	// InputAxes, OutputAxes are "scan_input_axes", "scan_output_axes"
	// (nil: 0 for each; from opset 9).
	InputAxes, OutputAxes []int64
	// InputDirections, OutputDirections are "scan_input_directions" (or
	// "directions" before opset 9) and "scan_output_directions" (nil: 0
	// for each); each entry 0 (forward) or 1 (reverse).
	InputDirections, OutputDirections []int64
}

// ParseScanAttrs reads a Scan node's attributes.
func ParseScanAttrs(n *ir.Node, opset int64) (ScanAttrs, error) {
	a := AttrsOf(n)
	r := ScanAttrs{Body: a.RequireGraph("body"), NumScanInputs: a.Int("num_scan_inputs", -1), Opset8: opset < 9}
	dirName := "scan_input_directions"
	if r.Opset8 {
		dirName = "directions"
		r.InputDirections = a.Ints("directions", nil)
	} else {
		r.InputAxes = a.Ints("scan_input_axes", nil)
		r.InputDirections = a.Ints("scan_input_directions", nil)
		r.OutputAxes = a.Ints("scan_output_axes", nil)
		r.OutputDirections = a.Ints("scan_output_directions", nil)
	}
	if a.Err() != nil {
		return ScanAttrs{}, a.Err()
	}
	if r.NumScanInputs < 1 {
		a.Fail("num_scan_inputs", "must be at least 1, got %d", r.NumScanInputs)
	}
	for _, d := range []struct {
		name string
		v    []int64
	}{{dirName, r.InputDirections}, {"scan_output_directions", r.OutputDirections}} {
		for i, v := range d.v {
			if v != 0 && v != 1 {
				a.Fail(d.name, "entry %d is %d, want 0 (forward) or 1 (reverse)", i, v)
			}
		}
	}
	if a.Err() != nil {
		return ScanAttrs{}, a.Err()
	}
	return r, nil
}

// SequenceEmptyAttrs are SequenceEmpty's attributes.
type SequenceEmptyAttrs struct {
	// DType is "dtype", the element type of the sequence's tensors
	// (float32 by default).
	DType tensor.DType
}

// ParseSequenceEmptyAttrs reads a SequenceEmpty node's attributes.
func ParseSequenceEmptyAttrs(n *ir.Node, opset int64) (SequenceEmptyAttrs, error) {
	a := AttrsOf(n)
	dt := tensor.DType(a.Int("dtype", int64(tensor.Float32)))
	if a.Err() == nil && !dt.Valid() {
		a.Fail("dtype", "%v is not a tensor element type kiln supports", dt)
	}
	if a.Err() != nil {
		return SequenceEmptyAttrs{}, a.Err()
	}
	return SequenceEmptyAttrs{DType: dt}, nil
}

// SplitToSequenceAttrs are SplitToSequence's attributes.
type SplitToSequenceAttrs struct {
	// Axis is "axis" (0 by default, possibly negative).
	Axis int64
	// KeepDims is "keepdims" not 0 (1 by default): without a split input
	// the split axis is kept (of size 1) or dropped.
	KeepDims bool
}

// ParseSplitToSequenceAttrs reads a SplitToSequence node's attributes.
func ParseSplitToSequenceAttrs(n *ir.Node, opset int64) (SplitToSequenceAttrs, error) {
	a := AttrsOf(n)
	r := SplitToSequenceAttrs{Axis: a.Int("axis", 0), KeepDims: a.Int("keepdims", 1) != 0}
	return r, a.Err()
}

// ConcatFromSequenceAttrs are ConcatFromSequence's attributes.
type ConcatFromSequenceAttrs struct {
	// Axis is the required "axis" (possibly negative).
	Axis int64
	// NewAxis is "new_axis" 1 (0 by default; 0 or 1): the tensors are
	// stacked along a new axis.
	NewAxis bool
}

// ParseConcatFromSequenceAttrs reads a ConcatFromSequence node's
// attributes.
func ParseConcatFromSequenceAttrs(n *ir.Node, opset int64) (ConcatFromSequenceAttrs, error) {
	a := AttrsOf(n)
	if !a.Has("axis") {
		a.Fail("axis", "required attribute is missing")
	}
	r := ConcatFromSequenceAttrs{Axis: a.Int("axis", 0)}
	switch v := a.Int("new_axis", 0); v {
	case 0, 1:
		r.NewAxis = v == 1
	default:
		a.Fail("new_axis", "is %d, want 0 or 1", v)
	}
	if a.Err() != nil {
		return ConcatFromSequenceAttrs{}, a.Err()
	}
	return r, nil
}

// OptionalAttrs are Optional's attributes.
type OptionalAttrs struct {
	// Type is "type" (one TYPE_PROTO), the type of an empty optional; nil
	// when absent, which needs the input.
	Type *ir.Type
}

// ParseOptionalAttrs reads an Optional node's attributes.
func ParseOptionalAttrs(n *ir.Node, opset int64) (OptionalAttrs, error) {
	a := AttrsOf(n)
	var r OptionalAttrs
	if at, ok := n.Attrs["type"]; ok {
		if at.Type != ir.AttrType1 || len(at.Types) != 1 {
			a.Fail("type", "want one type (TYPE_PROTO)")
			return OptionalAttrs{}, a.Err()
		}
		t := at.Types[0]
		r.Type = &t
	}
	if Arg(n.Inputs, 0) == nil && r.Type == nil {
		a.Fail("type", "Optional without an input needs the type attribute")
		return OptionalAttrs{}, a.Err()
	}
	return r, nil
}
