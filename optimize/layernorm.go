package optimize

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// layerNormPass replaces the decomposed layer normalization exporters write
// over the last axis,
//
//	d = x - ReduceMean(x); y = d / Sqrt(ReduceMean(d^2) + eps) [* gamma + beta]
//
// (d^2 as Pow(d, 2) or Mul(d, d)) with one LayerNormalization node: ONNX's
// from opset 17, kiln::LayerNormalization before. gamma and beta must be
// float32 constants of at most one dimension. It works in g and in its
// subgraphs.
type layerNormPass struct{}

func (layerNormPass) Name() string { return "layernorm" }

func (p layerNormPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (layerNormPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		nm := newNamer(g)
		drop := map[*ir.Node]bool{}
		var added []*ir.Node
		for _, r := range g.Nodes {
			if !isOp(r, "ReduceMean") || drop[r] {
				continue
			}
			m, ok := matchLayerNorm(g, usesOf(g), r)
			if !ok {
				continue
			}
			skip := false
			for _, n := range m.nodes {
				skip = skip || drop[n]
			}
			if skip {
				continue
			}
			gamma := m.gamma
			if gamma == nil {
				ones := tensor.New(tensor.Float32, m.width)
				for i := range ones.Float32s() {
					ones.Float32s()[i] = 1
				}
				gamma = addInit(g, nm, r.Name+"_ln_scale", ones)
			}
			in := []*ir.Value{m.x, gamma}
			if m.beta != nil {
				in = append(in, m.beta)
			}
			n := &ir.Node{Name: nm.name(r.Name + "_layernorm"), OpType: "LayerNormalization", Inputs: in,
				Outputs: []*ir.Value{m.out}, Attrs: map[string]*ir.Attr{
					"axis":    ir.IntAttr("axis", -1),
					"epsilon": ir.FloatAttr("epsilon", m.eps),
				}}
			if g.Opset() < 17 {
				toFused(g, n, "LayerNormalization")
			}
			m.out.Producer = n
			for _, d := range m.nodes {
				drop[d] = true
			}
			added = append(added, n)
			logf(log, "%d nodes from %s as %s", len(m.nodes), r, n)
		}
		removeNodes(g, drop)
		g.Nodes = append(g.Nodes, added...)
		return len(added) > 0, nil
	})
}

type layerNormMatch struct {
	x, gamma, beta, out *ir.Value
	eps                 float32
	width               int
	nodes               []*ir.Node
}

// lastAxisMean reports whether r is a ReduceMean over the last axis of its
// input only, keeping dims.
func lastAxisMean(g *ir.Graph, r *ir.Node) bool {
	if !isOp(r, "ReduceMean") || len(r.Outputs) != 1 || len(r.Inputs) == 0 {
		return false
	}
	a, err := ops.ParseReduceAttrs(r, g.Opset())
	if err != nil || !a.KeepDims {
		return false
	}
	axes := a.Axes // the attribute, honoured while input 1 is absent
	if v := r.Input(1); axes == nil && v != nil {
		if !isConst(g, v) || v.Const.DType != tensor.Int64 {
			return false
		}
		axes = v.Const.Int64s()
	}
	s := r.Inputs[0].Type.Shape
	if len(axes) != 1 || s == nil {
		return false
	}
	return axes[0] == -1 || axes[0] == int64(len(s)-1)
}

// matchLayerNorm matches the pattern whose first ReduceMean is r.
func matchLayerNorm(g *ir.Graph, u *usage, r *ir.Node) (m layerNormMatch, ok bool) {
	if !lastAxisMean(g, r) {
		return m, false
	}
	m.x = r.Inputs[0]
	s := m.x.Type.Shape
	if m.x.Type.DType != tensor.Float32 || len(s) == 0 || !s[len(s)-1].Known() {
		return m, false
	}
	m.width = int(s[len(s)-1].Val)
	sub := u.only(r.Outputs[0])
	if !isOp(sub, "Sub") || len(sub.Inputs) != 2 || sub.Inputs[0] != m.x || sub.Inputs[1] != r.Outputs[0] {
		return m, false
	}
	d := sub.Outputs[0]
	c := u.consumers[d]
	if len(c) < 2 || len(c) > 3 || u.captured[d] || u.output[d] {
		return m, false
	}
	var sq, div *ir.Node
	for _, n := range c {
		switch {
		case isOp(n, "Pow") && len(n.Inputs) == 2 && n.Inputs[0] == d && isScalar(g, n.Inputs[1], 2):
			sq = n
		case isOp(n, "Mul") && len(n.Inputs) == 2 && n.Inputs[0] == d && n.Inputs[1] == d:
			sq = n
		case isOp(n, "Div") && len(n.Inputs) == 2 && n.Inputs[0] == d:
			div = n
		}
	}
	want := 2 // the square and the division
	if sq != nil && isOp(sq, "Mul") {
		want = 3 // Mul(d, d) reads d twice
	}
	if sq == nil || div == nil || len(c) != want {
		return m, false
	}
	r2 := u.only(sq.Outputs[0])
	if !lastAxisMean(g, r2) || r2.Inputs[0] != sq.Outputs[0] {
		return m, false
	}
	add := u.only(r2.Outputs[0])
	if !isOp(add, "Add") || len(add.Inputs) != 2 {
		return m, false
	}
	epsV := add.Inputs[1]
	if epsV == r2.Outputs[0] {
		epsV = add.Inputs[0]
	}
	if !isConst(g, epsV) || epsV.Const.DType != tensor.Float32 || epsV.Const.Len() != 1 || epsV.Const.Rank() > 1 {
		return m, false
	}
	m.eps = epsV.Const.Float32s()[0]
	sqrt := u.only(add.Outputs[0])
	if !isOp(sqrt, "Sqrt") || u.only(sqrt.Outputs[0]) != div || div.Inputs[1] != sqrt.Outputs[0] || m.eps < 0 {
		return m, false
	}
	m.nodes = []*ir.Node{r, sub, sq, r2, add, sqrt, div}
	m.out = div.Outputs[0]
	// optional affine part
	affine := func(op string) (*ir.Node, *ir.Value) {
		n := u.only(m.out)
		if !isOp(n, op) || len(n.Inputs) != 2 || len(n.Outputs) != 1 {
			return nil, nil
		}
		p := n.Inputs[1]
		if p == m.out {
			p = n.Inputs[0]
		}
		if !isConst(g, p) || p.Const.DType != tensor.Float32 || p.Const.Rank() != 1 || p.Const.Len() != m.width {
			return nil, nil
		}
		return n, p
	}
	if mul, gamma := affine("Mul"); mul != nil {
		m.gamma, m.out = gamma, mul.Outputs[0]
		m.nodes = append(m.nodes, mul)
		if badd, beta := affine("Add"); badd != nil {
			m.beta, m.out = beta, badd.Outputs[0]
			m.nodes = append(m.nodes, badd)
		}
	}
	return m, true
}

func init() { Register(layerNormPass{}) }
