package ir

import (
	"fmt"

	"github.com/kilnai/kiln/tensor"
)

// Builder writes a graph in Go: inputs, constants, nodes and outputs, with
// names generated where none is given. It is how kiln makes its example
// models and test graphs.
type Builder struct {
	g    *Graph
	seq  map[string]int
	used map[string]bool
}

// NewBuilder starts a graph importing the given default-domain opset.
func NewBuilder(name string, opset int64) *Builder {
	return &Builder{
		g:    &Graph{Name: name, Opsets: map[string]int64{"": opset}},
		seq:  map[string]int{},
		used: map[string]bool{},
	}
}

func (b *Builder) name(prefix string) string {
	for {
		b.seq[prefix]++
		n := fmt.Sprintf("%s_%d", prefix, b.seq[prefix])
		if !b.used[n] {
			b.used[n] = true
			return n
		}
	}
}

func (b *Builder) claim(name string) string {
	if b.used[name] {
		panic("ir: builder: name " + name + " used twice")
	}
	b.used[name] = true
	return name
}

// Input adds a graph input.
func (b *Builder) Input(name string, dt tensor.DType, dims ...Dim) *Value {
	v := &Value{Name: b.claim(name), Type: Type{DType: dt, Shape: append(Shape{}, dims...)}}
	b.g.Inputs = append(b.g.Inputs, v)
	return v
}

// Const adds an initializer holding t; an empty name is generated.
func (b *Builder) Const(name string, t *tensor.Tensor) *Value {
	if name == "" {
		name = b.name("const")
	} else {
		b.claim(name)
	}
	v := &Value{Name: name, Const: t, Type: Type{DType: t.DType, Shape: KnownShape(t.Shape...)}}
	b.g.Initializers = append(b.g.Initializers, v)
	return v
}

// Op adds a node with one output and returns that output.
func (b *Builder) Op(op string, inputs []*Value, attrs ...*Attr) *Value {
	return b.OpN(op, 1, inputs, attrs...)[0]
}

// OpN adds a node with n outputs and returns them.
func (b *Builder) OpN(op string, n int, inputs []*Value, attrs ...*Attr) []*Value {
	node := &Node{Name: b.name(op), OpType: op, Inputs: inputs, Attrs: map[string]*Attr{}}
	for _, a := range attrs {
		node.Attrs[a.Name] = a
	}
	for i := 0; i < n; i++ {
		v := &Value{Name: b.name(node.Name + "_out"), Producer: node}
		node.Outputs = append(node.Outputs, v)
	}
	b.g.Nodes = append(b.g.Nodes, node)
	return node.Outputs
}

// Output marks v as a graph output, renaming it to name when name is set.
func (b *Builder) Output(v *Value, name string) {
	if name != "" && name != v.Name {
		delete(b.used, v.Name)
		v.Name = b.claim(name)
	}
	b.g.Outputs = append(b.g.Outputs, v)
}

// Graph returns the graph built so far.
func (b *Builder) Graph() *Graph { return b.g }

// IntAttr returns an integer attribute.
func IntAttr(name string, v int64) *Attr { return &Attr{Name: name, Type: AttrInt, I: v} }

// IntsAttr returns an ints attribute.
func IntsAttr(name string, v ...int64) *Attr { return &Attr{Name: name, Type: AttrInts, Ints: v} }

// FloatAttr returns a float attribute.
func FloatAttr(name string, v float32) *Attr { return &Attr{Name: name, Type: AttrFloat, F: v} }

// StringAttr returns a string attribute.
func StringAttr(name, v string) *Attr { return &Attr{Name: name, Type: AttrString, S: v} }

// GraphAttr returns a graph attribute.
func GraphAttr(name string, g *Graph) *Attr { return &Attr{Name: name, Type: AttrGraph, G: g} }
