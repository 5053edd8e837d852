package optimize

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// usage records, for one graph, who reads each value.
type usage struct {
	consumers map[*ir.Value][]*ir.Node
	captured  map[*ir.Value]bool // read by a subgraph of some node
	output    map[*ir.Value]bool // a graph output
}

func usesOf(g *ir.Graph) *usage {
	u := &usage{consumers: map[*ir.Value][]*ir.Node{}, captured: map[*ir.Value]bool{}, output: map[*ir.Value]bool{}}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			if v != nil {
				u.consumers[v] = append(u.consumers[v], n)
			}
		}
		for _, sg := range n.Subgraphs() {
			for _, v := range sg.OuterValues() {
				u.captured[v] = true
			}
		}
	}
	for _, v := range g.Outputs {
		u.output[v] = true
	}
	return u
}

// used reports whether anything reads v.
func (u *usage) used(v *ir.Value) bool {
	return len(u.consumers[v]) > 0 || u.captured[v] || u.output[v]
}

// only returns the single node reading v, or nil when v has another reader
// (a second node, a subgraph, the graph's outputs) or none.
func (u *usage) only(v *ir.Value) *ir.Node {
	c := u.consumers[v]
	if len(c) != 1 || u.captured[v] || u.output[v] {
		return nil
	}
	return c[0]
}

// replaceUses makes every reader of old in g (its nodes and the captures of
// their subgraphs) read new instead. Graph outputs are left alone.
func replaceUses(g *ir.Graph, old, new *ir.Value) {
	for _, n := range g.Nodes {
		for i, v := range n.Inputs {
			if v == old {
				n.Inputs[i] = new
			}
		}
		for _, sg := range n.Subgraphs() {
			for _, c := range sg.Captures {
				if c.Outer == old {
					c.Outer = new
				}
			}
		}
	}
}

// removeNodes drops the given nodes from g.
func removeNodes(g *ir.Graph, drop map[*ir.Node]bool) {
	if len(drop) == 0 {
		return
	}
	kept := g.Nodes[:0]
	for _, n := range g.Nodes {
		if !drop[n] {
			kept = append(kept, n)
		}
	}
	for i := len(kept); i < len(g.Nodes); i++ {
		g.Nodes[i] = nil
	}
	g.Nodes = kept
}

// bypass removes node n, which passes in through unchanged as out, making
// out's readers read in. When out is a graph output, in's producer writes
// out directly instead, if nothing else reads in. It reports whether it
// could.
func bypass(g *ir.Graph, u *usage, n *ir.Node, in, out *ir.Value, drop map[*ir.Node]bool) bool {
	if in == nil || out == nil || in.Type.DType != out.Type.DType && out.Type.DType != tensor.Undefined {
		return false
	}
	if !u.output[out] {
		replaceUses(g, out, in)
		drop[n] = true
		return true
	}
	p := in.Producer
	if p == nil || drop[p] || !inGraph(g, p) || u.only(in) != n {
		return false
	}
	for i, o := range p.Outputs {
		if o == in {
			p.Outputs[i] = out
		}
	}
	out.Producer = p
	drop[n] = true
	return true
}

func inGraph(g *ir.Graph, n *ir.Node) bool {
	for _, m := range g.Nodes {
		if m == n {
			return true
		}
	}
	return false
}

// isConst reports whether v holds a constant of g: an initializer or a
// folded value, never an input that a caller may override nor a value of
// an enclosing graph.
func isConst(g *ir.Graph, v *ir.Value) bool {
	if v == nil || v.Const == nil || v.Outer != nil {
		return false
	}
	for _, in := range g.Inputs {
		if in == v {
			return false
		}
	}
	return true
}

// namer hands out value and node names not yet used in a graph.
type namer struct {
	used map[string]bool
}

func newNamer(g *ir.Graph) *namer {
	nm := &namer{used: map[string]bool{}}
	add := func(v *ir.Value) {
		if v != nil {
			nm.used[v.Name] = true
		}
	}
	var walk func(g *ir.Graph)
	walk = func(g *ir.Graph) {
		for _, v := range g.Inputs {
			add(v)
		}
		for _, v := range g.Initializers {
			add(v)
		}
		for _, v := range g.Captures {
			add(v)
		}
		for _, n := range g.Nodes {
			nm.used[n.Name] = true
			for _, v := range n.Outputs {
				add(v)
			}
			for _, sg := range n.Subgraphs() {
				walk(sg)
			}
		}
	}
	for x := g; x != nil; x = x.Parent {
		walk(x)
	}
	return nm
}

func (nm *namer) name(base string) string {
	if !nm.used[base] {
		nm.used[base] = true
		return base
	}
	for i := 1; ; i++ {
		s := fmt.Sprintf("%s_%d", base, i)
		if !nm.used[s] {
			nm.used[s] = true
			return s
		}
	}
}

// addInit adds an initializer holding t to g.
func addInit(g *ir.Graph, nm *namer, base string, t *tensor.Tensor) *ir.Value {
	v := &ir.Value{Name: nm.name(base), Const: t, Type: ops.TypeOf(t)}
	g.Initializers = append(g.Initializers, v)
	return v
}

// eachGraph calls fn on g and on every subgraph below it, innermost first,
// and reports whether any call changed something.
func eachGraph(g *ir.Graph, fn func(g *ir.Graph) (bool, error)) (bool, error) {
	changed := false
	for _, n := range g.Nodes {
		for _, sg := range n.Subgraphs() {
			c, err := eachGraph(sg, fn)
			if err != nil {
				return changed, err
			}
			if c {
				if err := sg.Sort(); err != nil {
					return changed, err
				}
			}
			changed = changed || c
		}
	}
	c, err := fn(g)
	return changed || c, err
}

// logf calls log when it is set.
func logf(log func(string), format string, args ...any) {
	if log != nil {
		log(fmt.Sprintf(format, args...))
	}
}

// isOp reports whether n is the default-domain op typ.
func isOp(n *ir.Node, typ string) bool {
	return n != nil && n.OpType == typ && (n.Domain == "" || n.Domain == "ai.onnx")
}
