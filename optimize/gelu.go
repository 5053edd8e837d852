package optimize

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// geluPass replaces the erf form of GELU as exporters write it,
// x*0.5*(1+Erf(x/sqrt(2))) in any of its usual groupings (Div by sqrt(2) or
// Mul by 1/sqrt(2); the 0.5 applied last, to x first, or to the Add), with
// one Gelu node: ONNX Gelu from opset 20, kiln::Gelu before. matmuladd and
// convfuse then fuse it as an activation. It works in g and in its
// subgraphs.
type geluPass struct{}

func (geluPass) Name() string { return "gelu" }

func (p geluPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (geluPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		nm := newNamer(g)
		drop := map[*ir.Node]bool{}
		var added []*ir.Node
		for _, e := range g.Nodes {
			if !isOp(e, "Erf") || drop[e] || len(e.Inputs) != 1 || len(e.Outputs) != 1 {
				continue
			}
			u := usesOf(g)
			x, out, nodes := matchGelu(g, u, e)
			if x == nil {
				continue
			}
			skip := false
			for _, n := range nodes {
				skip = skip || drop[n]
			}
			if skip {
				continue
			}
			n := &ir.Node{Name: nm.name(e.Name + "_gelu"), OpType: "Gelu", Domain: fusedDomain,
				Inputs: []*ir.Value{x}, Outputs: []*ir.Value{out}, Attrs: map[string]*ir.Attr{}}
			if g.Opset() >= 20 {
				n.Domain = ""
			} else {
				toFused(g, n, "Gelu")
			}
			out.Producer = n
			for _, m := range nodes {
				drop[m] = true
			}
			added = append(added, n)
			logf(log, "%d nodes around %s as %s", len(nodes), e, n)
		}
		removeNodes(g, drop)
		g.Nodes = append(g.Nodes, added...)
		return len(added) > 0, nil
	})
}

// matchGelu matches the erf GELU around Erf node e and returns its input,
// its output and the nodes it replaces; x is nil when e is not in one.
func matchGelu(g *ir.Graph, u *usage, e *ir.Node) (x, out *ir.Value, nodes []*ir.Node) {
	d := e.Inputs[0]
	dn := d.Producer
	if dn == nil || !inGraph(g, dn) || u.only(d) != e || len(dn.Inputs) != 2 {
		return nil, nil, nil
	}
	switch {
	case isOp(dn, "Div") && isScalar(g, dn.Inputs[1], math.Sqrt2):
		x = dn.Inputs[0]
	case isOp(dn, "Mul"):
		x = otherOperand(g, dn, 1/math.Sqrt2)
	}
	if x == nil || x.Type.DType != tensor.Float32 {
		return nil, nil, nil
	}
	add := u.only(e.Outputs[0])
	if !isOp(add, "Add") || otherOperand(g, add, 1) != e.Outputs[0] {
		return nil, nil, nil
	}
	m1 := u.only(add.Outputs[0])
	if !isOp(m1, "Mul") || len(m1.Inputs) != 2 {
		return nil, nil, nil
	}
	a := add.Outputs[0]
	other := m1.Inputs[0]
	if other == a {
		other = m1.Inputs[1]
	}
	switch {
	case other == x: // (x*(1+erf))*0.5
		m2 := u.only(m1.Outputs[0])
		if !isOp(m2, "Mul") || otherOperand(g, m2, 0.5) != m1.Outputs[0] {
			return nil, nil, nil
		}
		return x, m2.Outputs[0], []*ir.Node{dn, e, add, m1, m2}
	case other != nil && other.Producer != nil && isOp(other.Producer, "Mul") && u.only(other) == m1 &&
		otherOperand(g, other.Producer, 0.5) == x: // (x*0.5)*(1+erf)
		return x, m1.Outputs[0], []*ir.Node{dn, e, add, m1, other.Producer}
	case isScalar(g, other, 0.5): // x*((1+erf)*0.5)
		m2 := u.only(m1.Outputs[0])
		if !isOp(m2, "Mul") || len(m2.Inputs) != 2 || !(m2.Inputs[0] == x && m2.Inputs[1] == m1.Outputs[0] || m2.Inputs[1] == x && m2.Inputs[0] == m1.Outputs[0]) {
			return nil, nil, nil
		}
		return x, m2.Outputs[0], []*ir.Node{dn, e, add, m1, m2}
	}
	return nil, nil, nil
}

// isScalar reports whether v is a one-element float32 constant close to c.
func isScalar(g *ir.Graph, v *ir.Value, c float64) bool {
	if !isConst(g, v) || v.Const.DType != tensor.Float32 || v.Const.Len() != 1 || v.Const.Rank() > 1 {
		return false
	}
	return math.Abs(v.Const.Float(0)-c) <= 1e-4*math.Abs(c)
}

// otherOperand returns, for a binary node one of whose inputs is the scalar
// constant c, its other input; nil otherwise.
func otherOperand(g *ir.Graph, n *ir.Node, c float64) *ir.Value {
	if len(n.Inputs) != 2 || len(n.Outputs) != 1 {
		return nil
	}
	switch {
	case isScalar(g, n.Inputs[1], c):
		return n.Inputs[0]
	case isScalar(g, n.Inputs[0], c):
		return n.Inputs[1]
	}
	return nil
}

func init() { Register(geluPass{}) }
