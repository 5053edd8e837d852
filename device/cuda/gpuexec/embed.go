package gpuexec

import (
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// embedFusion lets half programs compute BERT's embeddings in their
// LayerNormalization (layernorm_embed_f16): the word-embedding Gather and
// the Add of the position (and token type) embeddings launch nothing.
// Tests turn it off to compare.
var embedFusion = true

// embedPlan is an embedding lookup and sum that a LayerNormalization
// computes itself: LN(Gather(table, idx) + a + z), where the Add of z is
// the normalization's folded Add (c.lnAdd) and add1 the Add of a.
type embedPlan struct {
	gather, add1 *ir.Node
	a            *ir.Value // add1's other input
	z            *ir.Value // the folded Add's other input
}

// planEmbedLN finds, among the LayerNormalizations with a folded Add
// (planAddLayerNorm), those whose Add sums an Add of a Gather: the rows of
// a constant 2-D table picked by int64 indices, one per row, plus a
// tensor of the row's shape or broadcast over leading dimensions. The
// Gather and that Add then launch nothing (c.skip); layerNorm launches
// layernorm_embed_f16. Only in half precision, rows of up to 1024
// elements (layernorm_vec_f16's), normalized over the last axis.
func (c *compiler) planEmbedLN() {
	c.embedLN = map[*ir.Node]*embedPlan{}
	if !embedFusion || !c.half || c.keep {
		return
	}
	producer := map[*ir.Value]*ir.Node{}
	for _, n := range c.g.Nodes {
		for _, o := range n.Outputs {
			if o != nil {
				producer[o] = n
			}
		}
	}
	// single is whether v is read by one node alone and is no output.
	single := func(v *ir.Value) bool { return v != nil && !c.outs[v] && len(c.uses[v]) == 1 }
	for _, ln := range c.g.Nodes { // graph order: the plans are the same on every build
		add2 := c.lnAdd[ln]
		if add2 == nil {
			continue
		}
		xd, err := c.dims(add2.Outputs[0])
		if err != nil || len(xd) < 2 {
			continue
		}
		axis, err := c.layerNormAxis(ln, len(xd))
		cols := xd[len(xd)-1]
		if err != nil || axis != len(xd)-1 || cols%8 != 0 || cols > 32*8*4 {
			continue
		}
		rows := prod(xd[:len(xd)-1])
		for i, u := range add2.Inputs {
			add1 := producer[u]
			if add1 == nil || add1.Domain != "" || add1.OpType != "Add" || len(add1.Inputs) != 2 || !single(u) || c.skip[add1] {
				continue
			}
			p := c.embedGather(producer, add1, xd, rows, single)
			if p == nil {
				continue
			}
			p.z = add2.Inputs[1-i]
			c.embedLN[ln] = p
			c.skip[p.gather] = true
			c.skip[add1] = true
			break
		}
	}
}

// embedGather returns the plan of add1 = Gather(table, idx) + a, when it
// is one (see planEmbedLN), without z.
func (c *compiler) embedGather(producer map[*ir.Value]*ir.Node, add1 *ir.Node, xd []int, rows int64, single func(*ir.Value) bool) *embedPlan {
	for j, gv := range add1.Inputs {
		g := producer[gv]
		if g == nil || g.Domain != "" || g.OpType != "Gather" || len(g.Inputs) != 2 || !single(gv) || c.skip[g] {
			continue
		}
		if a, err := ops.ParseGatherAttrs(g, c.g.Opset()); err != nil || a.Axis != 0 {
			continue
		}
		table, idx := g.Inputs[0], g.Inputs[1]
		td, err := c.dims(table)
		if err != nil || table.Const == nil || table.Const.DType != tensor.Float32 || len(td) != 2 || td[1] != xd[len(xd)-1] {
			continue
		}
		id, err := c.dims(idx)
		if err != nil || idx.Type.DType != tensor.Int64 || prod(id) != rows {
			continue
		}
		if gd, err := c.dims(gv); err != nil || !sameDims(gd, xd) {
			continue
		}
		a := add1.Inputs[1-j]
		if a == nil || !(a.Type.DType == tensor.Float32 || a.Const != nil && a.Const.DType == tensor.Float32) {
			continue
		}
		ad, err := c.dims(a)
		if err != nil || !leadingBroadcast(ad, xd) {
			continue
		}
		return &embedPlan{gather: g, add1: add1, a: a}
	}
	return nil
}

// leadingBroadcast reports whether a tensor of dims ad, read row by row
// modulo its rows, gives one of dims xd: the same rank and last dimension,
// and ad equal to xd after leading dimensions of 1.
func leadingBroadcast(ad, xd []int) bool {
	if len(ad) != len(xd) {
		return false
	}
	i := 0
	for i < len(ad) && ad[i] == 1 && xd[i] != 1 {
		i++
	}
	return sameDims(ad[i:], xd[i:])
}

// embedLayerNorm emits the LayerNormalization of plan p: layernorm_embed_f16
// over rows of cols, y = LN(table[idx] + a + z) * gamma + beta.
func (c *compiler) embedLayerNorm(s *step, p *embedPlan, yr, gr ref, br *ref, rows, cols int64, eps float32) error {
	table, idx := p.gather.Inputs[0], p.gather.Inputs[1]
	tr, err := c.ref(table)
	if err != nil {
		return err
	}
	td, _ := c.dims(table)
	xr, err := c.ref(idx)
	if err != nil {
		return err
	}
	ar, err := c.ref(p.a)
	if err != nil {
		return err
	}
	ad, err := c.dims(p.a)
	if err != nil {
		return err
	}
	zr, err := c.ref(p.z)
	if err != nil {
		return err
	}
	zd, err := c.dims(p.z)
	if err != nil {
		return err
	}
	for _, v := range []*ir.Value{idx, p.a, p.z} {
		c.use(v)
	}
	s.launches = append(s.launches, launch{kernel: "layernorm_embed_f16", grid: cuda.Dim3{X: uint32((rows + 3) / 4), Y: 1, Z: 1}, block: cuda.Dim3{X: 128, Y: 1, Z: 1},
		args: []arg{pArg(yr), pArg(tr), pArg(xr), lArg(int64(td[0])), pArg(ar), lArg(prod(ad) / cols), pArg(zr), lArg(prod(zd) / cols),
			pArg(gr), optArg(br), lArg(rows), iArg(int(cols)), fArg(eps)}})
	return nil
}
