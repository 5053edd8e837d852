package optimize

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// attentionPass replaces scaled dot-product attention as exporters write it,
//
//	MatMul(Softmax(MatMul(Q, K) [/ c | * c] [+ Mask], last axis), V)
//
// (K already transposed), with one kiln::Attention node, when every
// intermediate feeds only the next step and the values are float32 (the
// fused op broadcasts the mask as the Add did). It works in g and
// in its subgraphs.
type attentionPass struct{}

func (attentionPass) Name() string { return "attention" }

func (p attentionPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (attentionPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		nm := newNamer(g)
		drop := map[*ir.Node]bool{}
		var added []*ir.Node
		for _, sm := range g.Nodes {
			if !isOp(sm, "Softmax") || drop[sm] {
				continue
			}
			in, scale, out, nodes := matchAttention(g, usesOf(g), sm)
			if in == nil {
				continue
			}
			n := &ir.Node{Name: nm.name(sm.Name + "_attention"), Inputs: in, Outputs: []*ir.Value{out},
				Attrs: map[string]*ir.Attr{"scale": ir.FloatAttr("scale", scale)}}
			toFused(g, n, "Attention")
			out.Producer = n
			for _, d := range nodes {
				drop[d] = true
			}
			added = append(added, n)
			logf(log, "%d nodes around %s as %s", len(nodes), sm, n)
		}
		removeNodes(g, drop)
		g.Nodes = append(g.Nodes, added...)
		return len(added) > 0, nil
	})
}

// matchAttention matches the attention around Softmax node sm and returns
// the fused node's inputs (Q, K, V and the mask if any), its scale, its
// output and the nodes it replaces; in is nil when there is no match.
func matchAttention(g *ir.Graph, u *usage, sm *ir.Node) (in []*ir.Value, scale float32, out *ir.Value, nodes []*ir.Node) {
	if len(sm.Inputs) != 1 || len(sm.Outputs) != 1 {
		return nil, 0, nil, nil
	}
	s := sm.Inputs[0].Type.Shape
	if len(s) < 2 || sm.Inputs[0].Type.DType != tensor.Float32 {
		return nil, 0, nil, nil
	}
	a, err := ops.ParseSoftmaxAttrs(sm, g.Opset()) // axis 1 by default before opset 13
	if err != nil {
		return nil, 0, nil, nil
	}
	// Over the last axis alone, the legacy form (the dimensions from axis
	// on) is the same.
	if axis := a.Axis; axis != -1 && axis != int64(len(s)-1) {
		return nil, 0, nil, nil
	}
	mm2 := u.only(sm.Outputs[0])
	if !isOp(mm2, "MatMul") || len(mm2.Inputs) != 2 || mm2.Inputs[0] != sm.Outputs[0] {
		return nil, 0, nil, nil
	}
	nodes = []*ir.Node{sm, mm2}
	cur, reader := sm.Inputs[0], sm // walks back: [+ mask] <- [scale] <- MatMul
	var mask *ir.Value
	if p := cur.Producer; isOp(p, "Add") && len(p.Inputs) == 2 && u.only(cur) == reader && inGraph(g, p) {
		a, b := p.Inputs[0], p.Inputs[1]
		if !scoresLike(a) {
			a, b = b, a
		}
		if scoresLike(a) && b != nil && b.Type.DType == tensor.Float32 {
			mask, nodes, cur, reader = b, append(nodes, p), a, p
		}
	}
	scale = 1
	if p := cur.Producer; p != nil && (isOp(p, "Div") || isOp(p, "Mul")) && u.only(cur) == reader && inGraph(g, p) && len(p.Inputs) == 2 {
		x, c := p.Inputs[0], p.Inputs[1]
		if isOp(p, "Mul") && isConst(g, x) {
			x, c = c, x
		}
		if isConst(g, c) && c.Const.DType == tensor.Float32 && c.Const.Len() == 1 && c.Const.Rank() <= 1 && c.Const.Float32s()[0] != 0 {
			scale = c.Const.Float32s()[0]
			if isOp(p, "Div") {
				scale = 1 / scale
			}
			nodes, cur, reader = append(nodes, p), x, p
		}
	}
	mm1 := cur.Producer
	if !isOp(mm1, "MatMul") || len(mm1.Inputs) != 2 || u.only(cur) != reader || !inGraph(g, mm1) {
		return nil, 0, nil, nil
	}
	nodes = append(nodes, mm1)
	for _, v := range []*ir.Value{mm1.Inputs[0], mm1.Inputs[1], mm2.Inputs[1]} {
		if v == nil || v.Type.DType != tensor.Float32 {
			return nil, 0, nil, nil
		}
	}
	in = []*ir.Value{mm1.Inputs[0], mm1.Inputs[1], mm2.Inputs[1]}
	if mask != nil {
		in = append(in, mask)
	}
	return in, scale, mm2.Outputs[0], nodes
}

// scoresLike reports whether v comes from a MatMul, or a Div or Mul of one.
func scoresLike(v *ir.Value) bool {
	p := v.Producer
	if p != nil && (isOp(p, "Div") || isOp(p, "Mul")) && len(p.Inputs) == 2 {
		if isOp(p.Inputs[0].Producer, "MatMul") || isOp(p.Inputs[1].Producer, "MatMul") {
			return true
		}
	}
	return isOp(p, "MatMul")
}

func init() { Register(attentionPass{}) }
