package ir

import "github.com/kilnai/kiln/tensor"

// Clone returns a copy of g that can be changed (types re-inferred, nodes
// rewritten) without touching g: new values, nodes, attributes and
// subgraphs. Constant tensors (Value.Const, tensor attributes) are shared,
// not copied: kiln never writes into them.
func (g *Graph) Clone() *Graph {
	return g.clone(nil, map[*Value]*Value{})
}

// clone copies g as a subgraph of parent; vals maps the values of g's
// enclosing graphs to their copies (for captures).
func (g *Graph) clone(parent *Graph, vals map[*Value]*Value) *Graph {
	c := &Graph{Name: g.Name, Parent: parent, Opsets: make(map[string]int64, len(g.Opsets))}
	for k, v := range g.Opsets {
		c.Opsets[k] = v
	}
	val := func(v *Value) *Value {
		if v == nil {
			return nil
		}
		if cv, ok := vals[v]; ok {
			return cv
		}
		cv := &Value{Name: v.Name, Type: v.Type.Clone(), Const: v.Const}
		if v.ShapeValue != nil {
			cv.ShapeValue = append([]Dim{}, v.ShapeValue...)
		}
		if v.Outer != nil {
			cv.Outer = vals[v.Outer]
			if cv.Outer == nil {
				cv.Outer = v.Outer // captured from outside the cloned graph
			}
		}
		vals[v] = cv
		return cv
	}
	for _, v := range g.Captures {
		c.Captures = append(c.Captures, val(v))
	}
	for _, v := range g.Inputs {
		c.Inputs = append(c.Inputs, val(v))
	}
	for _, v := range g.Initializers {
		c.Initializers = append(c.Initializers, val(v))
	}
	for _, n := range g.Nodes {
		cn := &Node{Name: n.Name, OpType: n.OpType, Domain: n.Domain}
		for _, v := range n.Inputs {
			cn.Inputs = append(cn.Inputs, val(v))
		}
		for _, v := range n.Outputs {
			cv := val(v)
			if cv != nil {
				cv.Producer = cn
			}
			cn.Outputs = append(cn.Outputs, cv)
		}
		if n.Attrs != nil {
			cn.Attrs = make(map[string]*Attr, len(n.Attrs))
			for k, a := range n.Attrs {
				ca := *a
				ca.Floats = append([]float32(nil), a.Floats...)
				ca.Ints = append([]int64(nil), a.Ints...)
				ca.Strings = append([]string(nil), a.Strings...)
				ca.Tensors = append([]*tensor.Tensor(nil), a.Tensors...)
				if a.G != nil {
					ca.G = a.G.clone(c, vals)
				}
				if a.Graphs != nil {
					ca.Graphs = make([]*Graph, len(a.Graphs))
					for i, sg := range a.Graphs {
						ca.Graphs[i] = sg.clone(c, vals)
					}
				}
				cn.Attrs[k] = &ca
			}
		}
		c.Nodes = append(c.Nodes, cn)
	}
	for _, v := range g.Outputs {
		c.Outputs = append(c.Outputs, val(v))
	}
	return c
}
