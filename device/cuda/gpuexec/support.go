package gpuexec

import (
	"errors"
	"fmt"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Supports reports whether the GPU executor runs node n of g (optimized,
// types inferred): nil if it does, else an error wrapping ErrUnsupported
// (and device.ErrUnsupported) that says why. It makes compile's decision
// (the same op table, input counts, used outputs and element types);
// limits that depend on bound shapes still fail at compile time. A node
// that folding turns into constants once the input shapes are bound (as
// the plan's engines are prepared, see compilePlan) is supported: compile
// never runs it. Those are the computations on shapes: nodes whose
// outputs are constants or shape values, and nodes that read only
// constants and such values (Range, ConstantOfShape of a shape).
func Supports(n *ir.Node, g *ir.Graph) error {
	if v := n.NonTensorValue(); v != nil {
		return unsupportedError{fmt.Errorf("%w: %q has type %v: sequence and optional values run on the CPU", ErrUnsupported, v.Name, v.Type)}
	}
	if foldsWhenBound(n, g) {
		return nil
	}
	used := func(v *ir.Value) bool { return usedIn(g, v) }
	d, err := support(n, g.Opset(), used)
	if err != nil {
		return unsupportedError{err}
	}
	if err := dryRun(n, g, used); err != nil {
		return unsupportedError{err}
	}
	if err := verifiedOnGPU(n, d); err != nil {
		return unsupportedError{err}
	}
	return nil
}

// probeDim is the size a symbolic or unknown dimension takes in dryRun.
const probeDim = 16

// dryRun compiles n alone, as compile would within g, at g's shapes (a
// symbolic or unknown dimension taken as probeDim, one size per symbol),
// so that the limits emit checks on attributes, ranks and shapes (2-D
// windows, Resize modes, Softmax axes, broadcasting) decide support too.
// It returns the compiler's error when it wraps ErrUnsupported, and nil
// when it compiles or when the node cannot be tried alone (types not
// inferred, shapes that do not agree once the probe sizes are put in):
// the full compile decides those.
func dryRun(n *ir.Node, g *ir.Graph, used func(*ir.Value) bool) (err error) {
	defer func() {
		if recover() != nil {
			err = nil // probe sizes the compiler trips on: the full compile decides
		}
	}()
	sub := &ir.Graph{Name: "supports", Opsets: g.Opsets}
	inputs := map[*ir.Value]bool{}
	for _, v := range g.Inputs {
		inputs[v] = true
	}
	node := &ir.Node{Name: n.Name, OpType: n.OpType, Domain: n.Domain, Attrs: n.Attrs}
	seen := map[*ir.Value]*ir.Value{}
	for _, v := range n.Inputs {
		if v == nil {
			node.Inputs = append(node.Inputs, nil)
			continue
		}
		if c, ok := seen[v]; ok {
			node.Inputs = append(node.Inputs, c)
			continue
		}
		c := &ir.Value{Name: v.Name}
		switch {
		case v.Const != nil && !inputs[v]:
			c.Const, c.Type = v.Const, v.Type
			sub.Initializers = append(sub.Initializers, c)
		case v.ShapeValue != nil:
			vals := make([]int64, len(v.ShapeValue))
			for i, d := range v.ShapeValue {
				vals[i] = probe(d)
			}
			t := tensor.FromInt64(vals, len(vals))
			if v.Type.DType == tensor.Int32 {
				t = tensor.New(tensor.Int32, len(vals))
				for i, x := range vals {
					t.Int32s()[i] = int32(x)
				}
			}
			c.Const, c.Type = t, ir.Type{DType: t.DType, Shape: ir.KnownShape(len(vals))}
			sub.Initializers = append(sub.Initializers, c)
		default:
			if v.Type.DType == tensor.Undefined || v.Type.Shape == nil {
				return nil
			}
			dims := make([]int, len(v.Type.Shape))
			for i, d := range v.Type.Shape {
				dims[i] = int(probe(d))
			}
			c.Type = ir.Type{DType: v.Type.DType, Shape: ir.KnownShape(dims...)}
			sub.Inputs = append(sub.Inputs, c)
		}
		seen[v] = c
		node.Inputs = append(node.Inputs, c)
	}
	for i, o := range n.Outputs {
		if o == nil {
			node.Outputs = append(node.Outputs, nil)
			continue
		}
		c := &ir.Value{Name: o.Name, Producer: node}
		node.Outputs = append(node.Outputs, c)
		if i == 0 || used(o) {
			sub.Outputs = append(sub.Outputs, c)
		}
	}
	sub.Nodes = []*ir.Node{node}
	if _, err := ops.InferGraph(sub); err != nil {
		return nil
	}
	if _, err := compile(sub, false, false); err != nil && errors.Is(err, ErrUnsupported) {
		return err
	}
	return nil
}

// probe is d's size, or probeDim when it has none.
func probe(d ir.Dim) int64 {
	if d.Known() {
		return d.Val
	}
	return probeDim
}

// foldsWhenBound reports whether folding at bound input shapes computes n
// (see Supports).
func foldsWhenBound(n *ir.Node, g *ir.Graph) bool {
	inputs := map[*ir.Value]bool{}
	for _, v := range g.Inputs {
		inputs[v] = true
	}
	return (&folds{g: g, inputs: inputs, memo: map[*ir.Node]bool{}}).node(n)
}

// folds decides foldsWhenBound for the nodes of one graph.
type folds struct {
	g      *ir.Graph
	inputs map[*ir.Value]bool
	memo   map[*ir.Node]bool
	depth  int
}

// maxFoldDepth bounds how far back foldsWhenBound follows producers: shape
// computations are short chains, and a deep one is taken as not folding
// (the node is then decided by the op table), which keeps Supports linear
// in the depth of the graph.
const maxFoldDepth = 32

func (f *folds) node(n *ir.Node) bool {
	if ok, seen := f.memo[n]; seen {
		return ok
	}
	if f.depth >= maxFoldDepth {
		return false
	}
	f.memo[n] = false // a cycle folds nothing
	f.depth++
	ok := f.decide(n)
	f.depth--
	f.memo[n] = ok
	return ok
}

func (f *folds) decide(n *ir.Node) bool {
	if len(n.Outputs) == 0 || len(n.Subgraphs()) > 0 {
		return false
	}
	known := true
	for _, o := range n.Outputs {
		if o != nil && o.Const == nil && !shapeVector(o) {
			known = false
		}
	}
	if known {
		return true
	}
	for _, v := range n.Inputs {
		if v != nil && !f.value(v) {
			return false
		}
	}
	k, err := ops.Prepare(n, f.g.Opset())
	if err != nil {
		return false
	}
	_, random := k.(ops.NonDeterministic)
	return !random
}

// shapeVector reports whether v is a shape value that shape folding turns
// into a constant once the dims are known: a 1-D int64 or int32 vector
// (not the scalar of Size).
func shapeVector(v *ir.Value) bool {
	if v.ShapeValue == nil || (v.Type.DType != tensor.Int64 && v.Type.DType != tensor.Int32) {
		return false
	}
	return v.Type.Shape == nil || (len(v.Type.Shape) == 1 && (!v.Type.Shape[0].Known() || v.Type.Shape[0].Val == int64(len(v.ShapeValue))))
}

// value reports whether v is a constant, a shape value or computed from
// those alone.
func (f *folds) value(v *ir.Value) bool {
	switch {
	case f.inputs[v]:
		return false // a default can be overridden at run time
	case v.Const != nil || shapeVector(v):
		return true
	case v.Producer == nil:
		return false
	}
	return f.node(v.Producer)
}

// unsupportedError is a reason of Supports: its message is the executor's,
// and it matches both ErrUnsupported (or ErrGraph) and
// device.ErrUnsupported.
type unsupportedError struct{ err error }

func (e unsupportedError) Error() string { return e.err.Error() }

func (e unsupportedError) Unwrap() []error { return []error{e.err, device.ErrUnsupported} }

// DataDependent reports whether the number of rows of n's output depends
// on the data (NonMaxSuppression): a compiled program returns that output
// with the rows a run gives, and no node of the same program may read it
// (the partitioner's DataDependent, engine/partition, gives its readers a
// later segment).
func DataDependent(n *ir.Node, g *ir.Graph) bool {
	d, err := registry.lookup(n, g.Opset())
	return err == nil && d.dataDependent
}
