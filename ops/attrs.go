package ops

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Attrs reads a node's attributes, remembering the first error so that a
// Prepare function reads all it needs and checks Err once.
type Attrs struct {
	n   *ir.Node
	err error
}

// AttrsOf returns an attribute reader for n.
func AttrsOf(n *ir.Node) *Attrs { return &Attrs{n: n} }

// Err returns the first error met, wrapping ErrBadAttr.
func (a *Attrs) Err() error { return a.err }

// Fail records an error about attribute name (the first one wins).
func (a *Attrs) Fail(name, format string, args ...any) {
	if a.err == nil {
		a.err = fmt.Errorf("%w %q: %s", ErrBadAttr, name, fmt.Sprintf(format, args...))
	}
}

// Has reports whether the node has attribute name.
func (a *Attrs) Has(name string) bool { _, ok := a.n.Attrs[name]; return ok }

func (a *Attrs) get(name string, t ir.AttrType) *ir.Attr {
	at, ok := a.n.Attrs[name]
	if !ok {
		return nil
	}
	if at.Type != t {
		a.Fail(name, "has type %d, want %d", at.Type, t)
		return nil
	}
	return at
}

// Int returns integer attribute name, or def when absent.
func (a *Attrs) Int(name string, def int64) int64 {
	if at := a.get(name, ir.AttrInt); at != nil {
		return at.I
	}
	return def
}

// Float returns float attribute name, or def when absent.
func (a *Attrs) Float(name string, def float32) float32 {
	if at := a.get(name, ir.AttrFloat); at != nil {
		return at.F
	}
	return def
}

// String returns string attribute name, or def when absent.
func (a *Attrs) String(name string, def string) string {
	if at := a.get(name, ir.AttrString); at != nil {
		return at.S
	}
	return def
}

// Ints returns ints attribute name, or def when absent.
func (a *Attrs) Ints(name string, def []int64) []int64 {
	if at := a.get(name, ir.AttrInts); at != nil {
		return at.Ints
	}
	return def
}

// Floats returns floats attribute name, or def when absent.
func (a *Attrs) Floats(name string, def []float32) []float32 {
	if at := a.get(name, ir.AttrFloats); at != nil {
		return at.Floats
	}
	return def
}

// Strings returns strings attribute name, or def when absent.
func (a *Attrs) Strings(name string, def []string) []string {
	if at := a.get(name, ir.AttrStrings); at != nil {
		return at.Strings
	}
	return def
}

// Tensor returns tensor attribute name, or nil when absent.
func (a *Attrs) Tensor(name string) *tensor.Tensor {
	if at := a.get(name, ir.AttrTensor); at != nil {
		return at.T
	}
	return nil
}

// Graph returns graph attribute name, or nil when absent.
func (a *Attrs) Graph(name string) *ir.Graph {
	if at := a.get(name, ir.AttrGraph); at != nil {
		return at.G
	}
	return nil
}

// RequireGraph returns graph attribute name, failing when absent.
func (a *Attrs) RequireGraph(name string) *ir.Graph {
	g := a.Graph(name)
	if g == nil {
		a.Fail(name, "required graph attribute is missing")
	}
	return g
}

// OneOf checks that string attribute value v is one of allowed.
func (a *Attrs) OneOf(name, v string, allowed ...string) string {
	for _, s := range allowed {
		if v == s {
			return v
		}
	}
	a.Fail(name, "unsupported value %q (want one of %v)", v, allowed)
	return v
}

// SoftmaxAttrs are the attributes of Softmax, LogSoftmax and Hardmax, as
// every device reads them. Before opset 13 the input is taken as 2-D,
// split at Axis (the op works on the flattened trailing dimensions,
// Legacy); from opset 13 it works along the one dimension Axis.
type SoftmaxAttrs struct {
	// Axis is the attribute "axis", possibly negative (counted from the
	// end): by default 1 before opset 13, -1 from it.
	Axis int64
	// Legacy is set before opset 13: the op covers dimensions Axis..end.
	Legacy bool
}

// ParseSoftmaxAttrs reads the attributes of a Softmax, LogSoftmax or
// Hardmax node for opset (its Def.Attrs).
func ParseSoftmaxAttrs(n *ir.Node, opset int64) (SoftmaxAttrs, error) {
	a := AttrsOf(n)
	s := SoftmaxAttrs{Legacy: opset < 13, Axis: -1}
	if s.Legacy {
		s.Axis = 1
	}
	s.Axis = a.Int("axis", s.Axis)
	return s, a.Err()
}
