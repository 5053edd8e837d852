package optimize

import (
	"slices"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// mhaPass turns multi-head attention as BERT-style exports write it around
// kiln::Attention (after the attention and qkvmerge passes),
//
//	Split(X [B,S,3*H*D], last axis, three equal parts) -> Q, K, V
//	Q, V: Reshape to [B,S,H,D], Transpose (0,2,1,3)
//	K:    Reshape to [B,S,H,D], Transpose (0,2,3,1)
//	kiln::Attention(Q, K, V [, Mask]) -> Transpose (0,2,1,3) -> Reshape to [B,S,H*D]
//
// into one kiln::MultiHeadAttention(X [, Mask]) that reads the heads from
// X in place and writes them into [B,S,H*D] directly: the Split, the six
// Reshapes and the four Transposes (each a copy) go. Every intermediate must
// feed only the next step. It works in g and in its subgraphs; only the CPU
// runs kiln::MultiHeadAttention (DevicePass).
type mhaPass struct{}

func (mhaPass) Name() string { return "mha" }

func (mhaPass) Devices() []string { return []string{"cpu"} }

func (p mhaPass) Apply(g *ir.Graph) (bool, error) { return p.ApplyLog(g, nil) }

func (mhaPass) ApplyLog(g *ir.Graph, log func(string)) (bool, error) {
	return eachGraph(g, func(g *ir.Graph) (bool, error) {
		u := usesOf(g)
		nm := newNamer(g)
		drop := map[*ir.Node]bool{}
		var added []*ir.Node
		for _, n := range g.Nodes {
			if n.OpType != "Attention" || n.Domain != fusedDomain || drop[n] {
				continue
			}
			m := matchMHA(g, u, n)
			if m == nil {
				continue
			}
			if slices.ContainsFunc(m.nodes, func(d *ir.Node) bool { return drop[d] }) {
				continue
			}
			in := []*ir.Value{m.x}
			if m.mask != nil {
				in = append(in, m.mask)
			}
			f := &ir.Node{Name: nm.name(n.Name + "_mha"), Inputs: in, Outputs: []*ir.Value{m.out},
				Attrs: map[string]*ir.Attr{
					"num_heads": ir.IntAttr("num_heads", m.heads),
					"scale":     ir.FloatAttr("scale", m.scale),
				}}
			toFused(g, f, "MultiHeadAttention")
			m.out.Producer = f
			for _, d := range m.nodes {
				drop[d] = true
			}
			added = append(added, f)
			logf(log, "%d nodes around %s as %s (%d heads)", len(m.nodes), n, f, m.heads)
		}
		removeNodes(g, drop)
		g.Nodes = append(g.Nodes, added...)
		return len(added) > 0, nil
	})
}

// mhaMatch is what matchMHA found.
type mhaMatch struct {
	x, mask, out *ir.Value
	heads        int64
	scale        float32 // the Attention's
	nodes        []*ir.Node
}

// matchMHA matches the pattern of mhaPass around kiln::Attention node n.
func matchMHA(g *ir.Graph, u *usage, n *ir.Node) *mhaMatch {
	if len(n.Inputs) < 3 || len(n.Inputs) > 4 || len(n.Outputs) != 1 || n.Outputs[0] == nil {
		return nil
	}
	a, err := ops.ParseFusedAttentionAttrs(n, g.Opset())
	if err != nil {
		return nil
	}
	m := &mhaMatch{nodes: []*ir.Node{n}, scale: a.Scale}
	perms := [][]int64{{0, 2, 1, 3}, {0, 2, 3, 1}, {0, 2, 1, 3}}
	var split *ir.Node
	var hd [2]ir.Dim // H and D
	for i, want := range perms {
		t := n.Inputs[i]
		tr := only(g, u, t, n, "Transpose")
		if tr == nil || !slices.Equal(perm(tr), want) {
			return nil
		}
		rs := only(g, u, tr.Inputs[0], tr, "Reshape")
		if rs == nil || len(rs.Inputs) != 2 {
			return nil
		}
		sv := rs.Inputs[0]
		sp := sv.Producer
		if !isOp(sp, "Split") || len(sp.Outputs) != 3 || sp.Outputs[i] != sv || u.only(sv) != rs || !inGraph(g, sp) {
			return nil
		}
		if split != nil && sp != split {
			return nil
		}
		split = sp
		// The Reshape splits [B,S,H*D] into [B,S,H,D].
		in, out := sv.Type.Shape, rs.Outputs[0].Type.Shape
		if len(in) != 3 || len(out) != 4 || !out[2].Known() || !out[3].Known() || !out[0].Equal(in[0]) || !out[1].Equal(in[1]) {
			return nil
		}
		if i == 0 {
			hd = [2]ir.Dim{out[2], out[3]}
		} else if !out[2].Equal(hd[0]) || !out[3].Equal(hd[1]) {
			return nil
		}
		m.nodes = append(m.nodes, tr, rs)
	}
	x := split.Inputs[0]
	xs := x.Type.Shape
	h, d := hd[0].Val, hd[1].Val
	if x.Type.DType != tensor.Float32 || len(xs) != 3 || !xs[2].Known() || xs[2].Val != 3*h*d || h <= 0 || d <= 0 {
		return nil
	}
	sa, err := ops.ParseSplitAttrs(split, g.Opset())
	if err != nil {
		return nil
	}
	if ax := sa.Axis; ax != -1 && ax != 2 {
		return nil
	}
	if !equalThirds(g, split, sa, h*d) {
		return nil
	}
	m.nodes = append(m.nodes, split)
	// The output: Transpose (0,2,1,3) then Reshape to [B,S,H*D].
	tr := u.only(n.Outputs[0])
	if !isOp(tr, "Transpose") || !inGraph(g, tr) || !slices.Equal(perm(tr), perms[0]) {
		return nil
	}
	rs := u.only(tr.Outputs[0])
	if !isOp(rs, "Reshape") || !inGraph(g, rs) || len(rs.Outputs) != 1 {
		return nil
	}
	os := rs.Outputs[0].Type.Shape
	if len(os) != 3 || !os[0].Equal(xs[0]) || !os[1].Equal(xs[1]) || !os[2].Known() || os[2].Val != h*d {
		return nil
	}
	m.nodes = append(m.nodes, tr, rs)
	// The mask must broadcast to the scores [B,H,S,S] without enlarging them.
	if len(n.Inputs) == 4 && n.Inputs[3] != nil {
		mk := n.Inputs[3]
		full := ir.Shape{xs[0], ir.D(h), xs[1], xs[1]}
		ms := mk.Type.Shape
		if mk.Type.DType != tensor.Float32 || ms == nil || len(ms) > 4 {
			return nil
		}
		for i, dim := range ms {
			f := full[4-len(ms)+i]
			if !(dim.Known() && dim.Val == 1) && !dim.Equal(f) {
				return nil
			}
		}
		m.mask = mk
	}
	m.x, m.out, m.heads = x, rs.Outputs[0], h
	return m
}

// perm returns the perm attribute of Transpose node n (nil when absent or
// invalid).
func perm(n *ir.Node) []int64 {
	a, err := ops.ParseTransposeAttrs(n, 0) // the same at every opset
	if err != nil {
		return nil
	}
	return a.Perm
}

// only returns the op-typ producer of v when it is a node of g that n alone
// reads.
func only(g *ir.Graph, u *usage, v *ir.Value, n *ir.Node, typ string) *ir.Node {
	if v == nil || u.only(v) != n {
		return nil
	}
	p := v.Producer
	if !isOp(p, typ) || len(p.Outputs) != 1 || !inGraph(g, p) {
		return nil
	}
	return p
}

// equalThirds reports whether Split node sp, of attributes a, cuts its
// input's last axis into three parts of size part each.
func equalThirds(g *ir.Graph, sp *ir.Node, a ops.SplitAttrs, part int64) bool {
	var sizes []int64
	var c *ir.Value
	if a.SplitInput >= 0 {
		c = sp.Input(a.SplitInput)
	}
	switch {
	case a.Split != nil:
		sizes = a.Split
	case c != nil:
		if !isConst(g, c) || c.Const.DType != tensor.Int64 {
			return false
		}
		sizes = c.Const.Int64s()
	default:
		return true // equal parts
	}
	return slices.Equal(sizes, []int64{part, part, part})
}

func init() { Register(mhaPass{}) }
