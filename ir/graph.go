package ir

import (
	"fmt"

	"github.com/kilnai/kiln/tensor"
)

// Type is the type of a value: element type and shape. A zero Type means
// nothing is known yet. A sequence or optional value has DType
// tensor.Sequence or tensor.Optional, no Shape, and the type of its
// elements (of what it holds) in Elem (nil: unknown).
type Type struct {
	DType tensor.DType
	Shape Shape
	Elem  *Type
}

// SequenceOf returns the type of a sequence of elem values.
func SequenceOf(elem Type) Type { return Type{DType: tensor.Sequence, Elem: &elem} }

// OptionalOf returns the type of an optional elem value.
func OptionalOf(elem Type) Type { return Type{DType: tensor.Optional, Elem: &elem} }

// IsTensor reports whether t is a tensor type (or not known): not a
// sequence or an optional.
func (t Type) IsTensor() bool { return t.DType != tensor.Sequence && t.DType != tensor.Optional }

// ElemType returns the type of t's elements, the zero Type when unknown.
func (t Type) ElemType() Type {
	if t.Elem == nil {
		return Type{}
	}
	return *t.Elem
}

// Clone returns a deep copy of t.
func (t Type) Clone() Type {
	c := Type{DType: t.DType, Shape: t.Shape.Clone()}
	if t.Elem != nil {
		e := t.Elem.Clone()
		c.Elem = &e
	}
	return c
}

// String formats t as float32[batch,3,224,224], sequence(float32[?]) or
// optional(sequence(int64[3])).
func (t Type) String() string {
	if !t.IsTensor() {
		e := "?"
		if t.Elem != nil {
			e = t.Elem.String()
		}
		return t.DType.String() + "(" + e + ")"
	}
	return t.DType.String() + t.Shape.String()
}

// Value is a named edge of the graph: a graph input, an initializer, a
// constant or a node output.
type Value struct {
	Name string
	Type Type
	// Const holds the value's contents when they are known before run time:
	// initializers, Constant outputs and folded constants.
	Const *tensor.Tensor
	// ShapeValue, for a 1-D integer value computed from shapes (the output of
	// Shape, and Gather/Slice/Concat of such), holds its elements as dims,
	// some of which may be symbolic; nil when not known.
	ShapeValue []Dim
	// Producer is the node that computes the value; nil for graph inputs,
	// initializers and values of an enclosing graph.
	Producer *Node
	// Outer is set on a value a subgraph reads from an enclosing graph: it is
	// that graph's value.
	Outer *Value
}

// String returns the value's name and type.
func (v *Value) String() string { return fmt.Sprintf("%s:%v", v.Name, v.Type) }

// AttrType says which field of an Attr is set; the values are ONNX's.
type AttrType int

// Attribute types, numbered as in onnx.proto.
const (
	AttrFloat   AttrType = 1
	AttrInt     AttrType = 2
	AttrString  AttrType = 3
	AttrTensor  AttrType = 4
	AttrGraph   AttrType = 5
	AttrFloats  AttrType = 6
	AttrInts    AttrType = 7
	AttrStrings AttrType = 8
	AttrTensors AttrType = 9
	AttrGraphs  AttrType = 10
	// AttrType1 and AttrTypes hold types (ONNX's TYPE_PROTO and
	// TYPE_PROTOS), in Types.
	AttrType1 AttrType = 13
	AttrTypes AttrType = 14
)

// Attr is a node attribute; Type says which field holds its value.
type Attr struct {
	Name    string
	Type    AttrType
	F       float32
	I       int64
	S       string
	T       *tensor.Tensor
	G       *Graph
	Floats  []float32
	Ints    []int64
	Strings []string
	Tensors []*tensor.Tensor
	Graphs  []*Graph
	// Types holds an AttrType1 attribute's type (one entry) or an
	// AttrTypes attribute's types.
	Types []Type
}

// Node is one operator application.
type Node struct {
	Name   string
	OpType string
	Domain string
	// Inputs and Outputs are in operator order; a nil entry is an omitted
	// optional input or output.
	Inputs  []*Value
	Outputs []*Value
	Attrs   map[string]*Attr
}

// String returns "OpType(name)".
func (n *Node) String() string {
	if n.Name == "" {
		return n.OpType
	}
	return fmt.Sprintf("%s(%s)", n.OpType, n.Name)
}

// Input returns input i, or nil when it is absent.
func (n *Node) Input(i int) *Value {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return nil
}

// Graph is a computation: inputs, nodes, outputs. Subgraphs (bodies of If,
// Loop, Scan) are Graphs whose Parent is the enclosing graph.
type Graph struct {
	Name string
	// Inputs are the declared graph inputs, in order. An input that also has
	// an initializer carries it in Const and may be left out at run time.
	Inputs []*Value
	// Outputs are the declared graph outputs, in order.
	Outputs []*Value
	// Initializers are constant values that are not graph inputs.
	Initializers []*Value
	// Nodes are kept in topological order (see Sort).
	Nodes []*Node
	// Opsets maps an operator domain ("" is the default ONNX domain) to its
	// imported version.
	Opsets map[string]int64
	Parent *Graph
	// Captures are the values of a subgraph that stand for values of the
	// enclosing graph (each has Outer set), including those only its own
	// subgraphs read.
	Captures []*Value
}

// Opset returns the imported version of the default ONNX domain, looking
// through enclosing graphs.
func (g *Graph) Opset() int64 {
	for x := g; x != nil; x = x.Parent {
		if v, ok := x.Opsets[""]; ok {
			return v
		}
		if v, ok := x.Opsets["ai.onnx"]; ok {
			return v
		}
	}
	return 0
}

// Sort orders g.Nodes topologically (stable: the file's order is kept where
// it is already valid). It returns ErrInvalidGraph on a cycle.
func (g *Graph) Sort() error {
	produced := map[*Value]*Node{}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o != nil {
				produced[o] = n
			}
		}
	}
	state := map[*Node]int{} // 0 new, 1 visiting, 2 done
	order := make([]*Node, 0, len(g.Nodes))
	var visit func(n *Node) error
	visit = func(n *Node) error {
		// iterative enough for deep graphs: recursion depth is the longest
		// path, bounded by the node count; guard with an explicit stack size.
		switch state[n] {
		case 1:
			return fmt.Errorf("%w: cycle through node %v", ErrInvalidGraph, n)
		case 2:
			return nil
		}
		state[n] = 1
		for _, v := range nodeDeps(n) {
			if p := produced[v]; p != nil {
				if err := visit(p); err != nil {
					return err
				}
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, n := range g.Nodes {
		if err := visit(n); err != nil {
			return err
		}
	}
	g.Nodes = order
	return nil
}

// nodeDeps returns the values n reads: its inputs and the outer values its
// subgraphs read.
func nodeDeps(n *Node) []*Value {
	deps := append([]*Value{}, n.Inputs...)
	for _, a := range n.Attrs {
		for _, sg := range a.subgraphs() {
			deps = append(deps, sg.OuterValues()...)
		}
	}
	return deps
}

func (a *Attr) subgraphs() []*Graph {
	if a.G != nil {
		return []*Graph{a.G}
	}
	return a.Graphs
}

// Subgraphs returns the graphs held in n's attributes.
func (n *Node) Subgraphs() []*Graph {
	var gs []*Graph
	for _, a := range n.Attrs {
		gs = append(gs, a.subgraphs()...)
	}
	return gs
}

// OuterValues returns the values of the enclosing graph that g reads: the
// Outer of each of g's Captures.
func (g *Graph) OuterValues() []*Value {
	out := make([]*Value, len(g.Captures))
	for i, c := range g.Captures {
		out[i] = c.Outer
	}
	return out
}

// Validate checks structure: every node input is defined (graph input,
// initializer, an earlier node's output or an outer value), no value is
// produced twice, outputs exist, and the graph is acyclic. It sorts g.
func (g *Graph) Validate() error {
	if err := g.Sort(); err != nil {
		return err
	}
	defined := map[*Value]bool{}
	names := map[string]bool{}
	def := func(v *Value, what string) error {
		if v == nil {
			return nil
		}
		if names[v.Name] && v.Name != "" {
			return fmt.Errorf("%w: %s %q is defined twice", ErrInvalidGraph, what, v.Name)
		}
		names[v.Name] = true
		defined[v] = true
		return nil
	}
	for _, v := range g.Inputs {
		if err := def(v, "input"); err != nil {
			return err
		}
	}
	for _, v := range g.Initializers {
		if err := def(v, "initializer"); err != nil {
			return err
		}
	}
	for _, v := range g.Captures {
		defined[v] = true
	}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			if v != nil && !defined[v] {
				return fmt.Errorf("%w: node %v reads %q, which nothing defines", ErrInvalidGraph, n, v.Name)
			}
		}
		for _, sg := range n.Subgraphs() {
			if err := sg.Validate(); err != nil {
				return fmt.Errorf("subgraph of %v: %w", n, err)
			}
		}
		for _, v := range n.Outputs {
			if err := def(v, "output of "+n.String()); err != nil {
				return err
			}
		}
	}
	for _, v := range g.Outputs {
		if v == nil || !defined[v] {
			name := "<nil>"
			if v != nil {
				name = v.Name
			}
			return fmt.Errorf("%w: graph output %q is never computed", ErrInvalidGraph, name)
		}
	}
	return nil
}

// NonTensorValue returns the first value n (or a node of its subgraphs)
// reads or writes that is a sequence or an optional, nil when every one is
// a tensor (or not known). Devices other than the CPU run only tensors:
// their Supports refuses such a node, and the partitioner leaves it to the
// CPU.
func (n *Node) NonTensorValue() *Value {
	check := func(vs []*Value) *Value {
		for _, v := range vs {
			if v != nil && !v.Type.IsTensor() {
				return v
			}
		}
		return nil
	}
	if v := check(n.Inputs); v != nil {
		return v
	}
	if v := check(n.Outputs); v != nil {
		return v
	}
	for _, sg := range n.Subgraphs() {
		var found *Value
		sg.Walk(func(_ *Graph, m *Node) {
			if found == nil {
				found = check(m.Inputs)
				if found == nil {
					found = check(m.Outputs)
				}
			}
		})
		if found == nil {
			found = check(sg.Inputs)
		}
		if found != nil {
			return found
		}
	}
	return nil
}

// Walk calls fn for every node of g and of its subgraphs, depth first.
func (g *Graph) Walk(fn func(g *Graph, n *Node)) {
	for _, n := range g.Nodes {
		fn(g, n)
		for _, sg := range n.Subgraphs() {
			sg.Walk(fn)
		}
	}
}

// Capture returns g's value standing for the enclosing graph's value outer,
// adding it to g.Captures the first time.
func (g *Graph) Capture(outer *Value) *Value {
	for _, c := range g.Captures {
		if c.Outer == outer {
			return c
		}
	}
	c := &Value{Name: outer.Name, Type: outer.Type, Const: outer.Const, ShapeValue: outer.ShapeValue, Outer: outer}
	g.Captures = append(g.Captures, c)
	return c
}
