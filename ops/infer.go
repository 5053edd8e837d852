package ops

import (
	"context"
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// foldLimit bounds the number of input elements of a node that InferGraph
// evaluates at load time to propagate constants (shape computations).
const foldLimit = 1 << 16

// NonDeterministic is implemented by kernels whose outputs must never be
// computed ahead of time (random generators).
type NonDeterministic interface{ NonDeterministic() }

// InferGraph prepares a kernel for every node of g (in topological order),
// infers the type of every node output, and computes small constant outputs
// ahead of time so that shape computations become known. Declared types
// (value_info, graph outputs) are refined by what inference finds.
func InferGraph(g *ir.Graph) (map[*ir.Node]Kernel, error) {
	return InferGraphWith(g, Prepare)
}

// PrepareFunc returns the kernel of node n of a graph importing the given
// default-domain opset: Prepare (the op's reference kernel), or a device's
// choice among its own kernels and the reference (the CPU registry,
// device/cpu/kernels).
type PrepareFunc func(n *ir.Node, opset int64) (Kernel, error)

// InferGraphWith is InferGraph with the kernels prepared by prepare: the
// kernels it infers types with, folds constants with and returns.
func InferGraphWith(g *ir.Graph, prepare PrepareFunc) (map[*ir.Node]Kernel, error) {
	if err := g.Sort(); err != nil {
		return nil, err
	}
	for _, c := range g.Captures {
		c.Type, c.Const, c.ShapeValue = c.Outer.Type, c.Outer.Const, c.Outer.ShapeValue
	}
	for _, v := range g.Inputs {
		if v.Const != nil && v.Type.DType == tensor.Undefined {
			v.Type = TypeOf(v.Const)
		}
		// an input with a default may be overridden at run time: not constant
	}
	for _, v := range g.Initializers {
		if v.Const != nil {
			v.Type = TypeOf(v.Const)
		}
	}
	opset := g.Opset()
	kernels := make(map[*ir.Node]Kernel, len(g.Nodes))
	for _, n := range g.Nodes {
		k, err := prepare(n, opset)
		if err != nil {
			return nil, err
		}
		kernels[n] = k
		if err := checkTensorInputs(n, k); err != nil {
			return nil, err
		}
		in := make([]*ir.Value, len(n.Inputs))
		for i, v := range n.Inputs {
			in[i] = constView(g, v)
		}
		types, err := k.Infer(in)
		if err != nil {
			return nil, fmt.Errorf("node %q (%s): %w", n.Name, n.OpType, err)
		}
		for i, o := range n.Outputs {
			if o == nil || i >= len(types) {
				continue
			}
			o.Type = mergeType(o.Type, types[i])
			o.Producer = n
		}
		if sv, ok := k.(ShapeValuer); ok && len(n.Outputs) > 0 && n.Outputs[0] != nil {
			n.Outputs[0].ShapeValue = sv.ShapeValue(in)
		}
		foldNode(n, k, in)
	}
	return kernels, nil
}

// NonTensorInputs is implemented by the kernels that take sequence or
// optional values (ops/sequence, Identity, Loop); InferGraph refuses such a
// value as the input of any other node, so that a kernel made for tensors
// never sees one.
type NonTensorInputs interface{ NonTensorInputs() }

func checkTensorInputs(n *ir.Node, k Kernel) error {
	if _, ok := k.(NonTensorInputs); ok {
		return nil
	}
	for i, v := range n.Inputs {
		if v != nil && !v.Type.IsTensor() {
			return fmt.Errorf("%w: node %q (%s): input %d (%q) is a %v value; %s takes tensors only", ErrBadInput, n.Name, n.OpType, i, v.Name, v.Type, n.OpType)
		}
	}
	return nil
}

// constView hides the Const of a graph input that has a default value: the
// caller may override it, so it is not a constant.
func constView(g *ir.Graph, v *ir.Value) *ir.Value {
	if v == nil || v.Const == nil {
		return v
	}
	for _, gi := range g.Inputs {
		if gi == v {
			c := *v
			c.Const = nil
			return &c
		}
	}
	return v
}

func foldNode(n *ir.Node, k Kernel, in []*ir.Value) {
	if _, nd := k.(NonDeterministic); nd || len(n.Subgraphs()) > 0 {
		return
	}
	total := 0
	args := make([]*tensor.Tensor, len(in))
	for i, v := range in {
		if v == nil {
			continue
		}
		if v.Const == nil {
			return
		}
		args[i] = v.Const
		total += v.Const.Len()
	}
	if total > foldLimit {
		return
	}
	// only fold outputs whose size is known and small: a tiny input such as
	// ConstantOfShape's can ask for a huge output
	for _, o := range n.Outputs {
		if o == nil {
			continue
		}
		dims, ok := o.Type.Shape.Ints()
		if !ok || tensor.CheckShape(dims) != nil || tensor.NumElements(dims) > foldLimit {
			return
		}
	}
	outs, err := k.Run(&Env{Ctx: context.Background()}, args)
	if err != nil || len(outs) < len(n.Outputs) {
		return // the error will surface at run time, with run-time context
	}
	for i, o := range n.Outputs {
		if o != nil && outs[i] != nil {
			o.Const = outs[i]
			o.Type = TypeOf(outs[i])
		}
	}
}

// TypeOf returns the ir type of a concrete tensor; of a sequence value, a
// sequence of its first element's type (unknown when empty); of an empty
// optional, an optional of an unknown type.
func TypeOf(t *tensor.Tensor) ir.Type {
	switch t.DType {
	case tensor.Sequence:
		if len(t.Elems) == 0 || t.Elems[0] == nil {
			return ir.Type{DType: tensor.Sequence}
		}
		// the elements' type: dims where they all agree, unknown elsewhere
		e := TypeOf(t.Elems[0])
		for _, x := range t.Elems[1:] {
			if x == nil || x.DType != e.DType || len(x.Shape) != len(e.Shape) {
				e.Shape = nil
				break
			}
			for i, d := range x.Shape {
				if e.Shape[i].Known() && int(e.Shape[i].Val) != d {
					e.Shape[i] = ir.U()
				}
			}
		}
		return ir.SequenceOf(e)
	case tensor.Optional:
		return ir.Type{DType: tensor.Optional}
	}
	return ir.Type{DType: t.DType, Shape: ir.KnownShape(t.Shape...)}
}

// mergeType combines a declared type with an inferred one: inferred known
// dims win; a declared symbolic dim fills an inferred unknown one.
func mergeType(declared, inferred ir.Type) ir.Type {
	out := inferred
	if out.DType == tensor.Undefined {
		out.DType = declared.DType
	}
	if !out.IsTensor() {
		// a sequence or optional: merge what it holds
		if declared.DType == out.DType && declared.Elem != nil {
			e := mergeType(*declared.Elem, inferred.ElemType())
			out.Elem = &e
		}
		return out
	}
	if inferred.Shape == nil {
		out.Shape = declared.Shape.Clone()
		return out
	}
	if declared.Shape != nil && len(declared.Shape) == len(inferred.Shape) {
		out.Shape = inferred.Shape.Clone()
		for i, d := range out.Shape {
			if !d.Known() && d.Sym == "" {
				out.Shape[i] = declared.Shape[i]
			}
		}
	}
	return out
}
