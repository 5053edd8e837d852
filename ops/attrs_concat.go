package ops

import "github.com/kilnai/kiln/ir"

// Typed attributes of Concat and Split (ops/shape), read by the CPU
// kernels and the CUDA kernels alike (see Def.Attrs).

// ConcatAttrs are Concat's attributes.
type ConcatAttrs struct {
	// Axis is "axis", possibly negative (from opset 11): required from
	// opset 4, 1 by default before it.
	Axis int64
}

// ParseConcatAttrs reads a Concat node's attributes.
func ParseConcatAttrs(n *ir.Node, opset int64) (ConcatAttrs, error) {
	a := AttrsOf(n)
	if opset >= 4 && !a.Has("axis") {
		a.Fail("axis", "required attribute is missing")
	}
	return ConcatAttrs{Axis: a.Int("axis", 1)}, a.Err()
}

// SplitAttrs are Split's attributes.
type SplitAttrs struct {
	// Axis is "axis" (0 by default), possibly negative.
	Axis int64
	// Split is "split" where it gives the sizes (opsets 1 to 12; nil when
	// absent: equal parts, or input 1 at opset 1), one per output, not
	// negative. From opset 13 the sizes are input 1 and the attribute is
	// not read.
	Split []int64
	// SplitInput is the input that gives the sizes: 1 from opset 13, and
	// at opset 1 without the attribute; -1 where there is none.
	SplitInput int
	// NumOutputs is "num_outputs" (from opset 18; 0 when absent): equal
	// parts, the last one smaller when the dim does not divide. It must
	// be the node's number of outputs.
	NumOutputs int64
}

// ParseSplitAttrs reads a Split node's attributes.
func ParseSplitAttrs(n *ir.Node, opset int64) (SplitAttrs, error) {
	a := AttrsOf(n)
	s := SplitAttrs{Axis: a.Int("axis", 0), SplitInput: -1}
	switch {
	case opset >= 13:
		s.SplitInput = 1
	case a.Has("split"):
		s.Split = append([]int64{}, a.Ints("split", nil)...)
	case opset < 2:
		s.SplitInput = 1
	}
	nOut := int64(len(n.Outputs))
	if opset >= 18 && a.Has("num_outputs") {
		s.NumOutputs = a.Int("num_outputs", 0)
		if s.NumOutputs != nOut || s.NumOutputs < 1 {
			a.Fail("num_outputs", "%d for a node with %d outputs", s.NumOutputs, nOut)
		}
	}
	if s.Split != nil && nOut >= 1 {
		if int64(len(s.Split)) != nOut {
			a.Fail("split", "%v for %d outputs", s.Split, nOut)
		}
		for _, v := range s.Split {
			if v < 0 {
				a.Fail("split", "negative size in %v", s.Split)
			}
		}
	}
	return s, a.Err()
}
