package gpuexec

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// view is a strided window on the storage of another value: element
// (i0, i1, ...) of the viewed value lies at element off + sum(i_k *
// strides[k]) of base.
type view struct {
	base    *ir.Value
	off     int64
	dims    []int
	strides []int64
}

// use is one input of a node.
type use struct {
	node *ir.Node
	idx  int
}

// contiguous returns the view of a dense row-major value of the given dims.
func contiguous(v *ir.Value, dims []int) view {
	st := tensor.Strides(dims)
	s := make([]int64, len(st))
	for i, x := range st {
		s[i] = int64(x)
	}
	return view{base: v, dims: dims, strides: s}
}

// planViews finds the copies around half-precision attention that the
// tensor-core kernel (attention_mma) makes unnecessary by reading and
// writing through strides: the Transposes (and Reshapes) that lay out the
// heads of Q, K and V, the Split of a merged QKV projection before them, and
// the Transpose of the attention's output back to [batch, seq, heads, dim].
// Their nodes run no kernel; the values they would compute become views
// (c.views) or, for the output Transpose, the attention's own output
// (c.attOut). Nothing is planned with keep (every value must be readable)
// or outside half precision.
func (c *compiler) planViews() {
	c.views = map[*ir.Value]view{}
	c.attOut = map[*ir.Node]*ir.Node{}
	c.skip = map[*ir.Node]bool{}
	c.lnAdd = map[*ir.Node]*ir.Node{}
	if !c.half || c.keep {
		return
	}
	c.uses = map[*ir.Value][]use{}
	c.outs = map[*ir.Value]bool{}
	for _, v := range c.g.Outputs {
		c.outs[v] = true
	}
	for _, n := range c.g.Nodes {
		for i, v := range n.Inputs {
			if v != nil {
				c.uses[v] = append(c.uses[v], use{n, i})
			}
		}
	}
	for _, n := range c.g.Nodes {
		switch {
		case n.Domain == "" && n.OpType == "Split" && len(n.Inputs) > 0 && n.Inputs[0] != nil && n.Inputs[0].Const == nil:
			c.splitViews(n)
		case n.Domain == "" && n.OpType == "Transpose" && n.Inputs[0] != nil && n.Inputs[0].Const == nil && !c.skip[n]:
			x := n.Inputs[0]
			if _, ok := c.views[x]; ok {
				continue
			}
			xd, err := c.dims(x)
			if err != nil {
				continue
			}
			pv, ok := c.through(n, contiguous(x, xd))
			if !ok {
				continue
			}
			commits := map[*ir.Value]view{}
			if c.tryView(n.Outputs[0], pv, commits) {
				c.commit(commits)
			}
		case n.Domain == "kiln" && n.OpType == "Attention" && c.mmaOK(n):
			y := n.Outputs[0]
			u := c.uses[y]
			if c.outs[y] || len(u) != 1 || u[0].idx != 0 {
				continue
			}
			t := u[0].node
			if t.Domain != "" || t.OpType != "Transpose" || len(t.Outputs) == 0 || t.Outputs[0] == nil || !samePerm(c.transposePerm(t), 0, 2, 1, 3) {
				continue
			}
			c.attOut[n] = t
			c.skip[t] = true
		}
	}
	c.planAddLayerNorm()
	c.planEmbedLN()
	c.planMaskAffine()
}

// planAddLayerNorm fuses a residual Add into the LayerNormalization that
// alone reads it (half precision, layernorm_vec): the Add launches
// nothing, the normalization reads both of its inputs (c.lnAdd).
func (c *compiler) planAddLayerNorm() {
	producer := map[*ir.Value]*ir.Node{}
	for _, n := range c.g.Nodes {
		for _, o := range n.Outputs {
			if o != nil {
				producer[o] = n
			}
		}
	}
	for _, n := range c.g.Nodes {
		if n.OpType != "LayerNormalization" || (n.Domain != "" && n.Domain != "kiln") || len(n.Inputs) < 2 || n.Inputs[0] == nil || c.statsUsed(n) {
			continue
		}
		x := n.Inputs[0]
		a := producer[x]
		if a == nil || a.Domain != "" || a.OpType != "Add" || len(a.Inputs) != 2 || c.outs[x] || len(c.uses[x]) != 1 || c.skip[a] {
			continue
		}
		xd, err := c.dims(x)
		if err != nil || x.Type.DType != tensor.Float32 {
			continue
		}
		ok := true
		for _, in := range a.Inputs {
			d, err := c.dims(in)
			if in == nil || err != nil || !sameDims(d, xd) || in.Type.DType != tensor.Float32 && !(in.Const != nil && in.Const.DType == tensor.Float32) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		axis, err := c.layerNormAxis(n, len(xd))
		if err != nil || !vecRows(prod(xd[axis:])) {
			continue
		}
		c.lnAdd[n] = a
		c.skip[a] = true
	}
}

// vecRows reports whether layernorm_vec handles rows of cols elements.
func vecRows(cols int64) bool { return cols > 0 && cols%8 == 0 && cols <= 32*8*8 }

func samePerm(p []int64, want ...int64) bool {
	if len(p) != len(want) {
		return false
	}
	for i := range p {
		if p[i] != want[i] {
			return false
		}
	}
	return true
}

// splitViews makes the outputs of a Split over the last axis views of its
// input when every one of them is read in place.
func (c *compiler) splitViews(n *ir.Node) {
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil || len(xd) == 0 {
		return
	}
	sa, err := ops.ParseSplitAttrs(n, c.g.Opset())
	if err != nil {
		return
	}
	axis, err := ops.NormAxis("Split", sa.Axis, len(xd))
	if err != nil || axis != len(xd)-1 {
		return
	}
	base := contiguous(x, xd)
	commits := map[*ir.Value]view{}
	var off int64
	any := false
	for _, o := range n.Outputs {
		if o == nil {
			continue
		}
		od, err := c.dims(o)
		if err != nil || len(od) != len(xd) {
			return
		}
		pv := view{base: x, off: off, dims: od, strides: base.strides}
		off += int64(od[axis])
		if !c.outs[o] && len(c.uses[o]) == 0 {
			continue
		}
		if !c.tryView(o, pv, commits) {
			return
		}
		any = true
	}
	if any && off == int64(xd[axis]) {
		c.commit(commits)
		c.skip[n] = true
	}
}

func (c *compiler) commit(commits map[*ir.Value]view) {
	for v, pv := range commits {
		c.views[v] = pv
	}
	for _, n := range c.g.Nodes {
		if len(n.Outputs) > 0 && n.Outputs[0] != nil {
			if _, ok := commits[n.Outputs[0]]; ok && (n.OpType == "Reshape" || n.OpType == "Transpose") {
				c.skip[n] = true
			}
		}
	}
}

// through is the view of n's output (a Reshape that splits the last axis,
// or a Transpose) given the view of its input.
func (c *compiler) through(n *ir.Node, in view) (view, bool) {
	if n.Domain != "" || len(n.Outputs) == 0 || n.Outputs[0] == nil {
		return view{}, false
	}
	od, err := c.dims(n.Outputs[0])
	if err != nil {
		return view{}, false
	}
	r := len(in.dims)
	switch n.OpType {
	case "Reshape":
		if r == 0 || len(od) < r || in.strides[r-1] != 1 || !sameDims(od[:r-1], in.dims[:r-1]) || prod(od[r-1:]) != int64(in.dims[r-1]) {
			return view{}, false
		}
		tail := contiguous(nil, od[r-1:])
		return view{base: in.base, off: in.off, dims: od, strides: append(append([]int64{}, in.strides[:r-1]...), tail.strides...)}, true
	case "Transpose":
		perm := c.transposePerm(n)
		if len(perm) != r {
			return view{}, false
		}
		out := view{base: in.base, off: in.off, dims: make([]int, r), strides: make([]int64, r)}
		for i, p := range perm {
			if p < 0 || int(p) >= r {
				return view{}, false
			}
			out.dims[i], out.strides[i] = in.dims[p], in.strides[p]
		}
		if !sameDims(out.dims, od) {
			return view{}, false
		}
		return out, true
	}
	return view{}, false
}

// tryView reports whether v can be the view pv: every reader of v is a
// tensor-core attention (Q, K or V) or a Reshape or Transpose whose output
// can in turn be a view. The views found are added to commits.
func (c *compiler) tryView(v *ir.Value, pv view, commits map[*ir.Value]view) bool {
	if c.outs[v] || len(c.uses[v]) == 0 {
		return false
	}
	for _, u := range c.uses[v] {
		n := u.node
		switch {
		case n.Domain == "kiln" && n.OpType == "Attention" && u.idx <= 2 && c.mmaOK(n):
		case n.Domain == "" && (n.OpType == "Reshape" || n.OpType == "Transpose") && u.idx == 0:
			nv, ok := c.through(n, pv)
			if !ok || !c.tryView(n.Outputs[0], nv, commits) {
				return false
			}
			for _, o := range n.Outputs[1:] {
				if o != nil && (c.outs[o] || len(c.uses[o]) > 0) {
					return false
				}
			}
		default:
			return false
		}
	}
	commits[v] = pv
	return true
}

// mmaOK reports whether the kiln::Attention node n runs on the tensor-core
// kernel: half precision, inputs of rank 3 or 4 with equal batch dims, the
// head size of Q, K and V 32, 64 or 128, and a mask (if any) that does not
// enlarge the scores.
func (c *compiler) mmaOK(n *ir.Node) bool {
	if !c.half || !c.mma || len(n.Inputs) < 3 {
		return false
	}
	var d [3][]int
	for i := range d {
		if n.Inputs[i] == nil {
			return false
		}
		var err error
		if d[i], err = c.dims(n.Inputs[i]); err != nil || (len(d[i]) != 3 && len(d[i]) != 4) || n.Inputs[i].Type.DType != tensor.Float32 {
			return false
		}
	}
	rk := len(d[0])
	D, T := d[0][rk-1], d[1][rk-1]
	if len(d[1]) != rk || len(d[2]) != rk || !sameDims(d[1][:rk-2], d[0][:rk-2]) || !sameDims(d[2][:rk-2], d[0][:rk-2]) ||
		d[1][rk-2] != D || d[2][rk-2] != T || d[2][rk-1] != D {
		return false
	}
	if D != 32 && D != 64 && D != 128 {
		return false
	}
	if B := prod(d[0][:rk-2]); B > 65535 || d[0][rk-2] > math.MaxInt32/2 || T > math.MaxInt32/2 {
		return false
	}
	if m := input(n, 3); m != nil {
		md, err := c.dims(m)
		if err != nil || m.Type.DType != tensor.Float32 && !(m.Const != nil && m.Const.DType == tensor.Float32) {
			return false
		}
		scores := append(append([]int{}, d[0][:rk-2]...), d[0][rk-2], T)
		if len(md) > len(scores) {
			return false
		}
		for i := range md {
			if x, y := md[len(md)-1-i], scores[len(scores)-1-i]; x != 1 && x != y {
				return false
			}
		}
	}
	return true
}

// viewOf is the strided location of an attention input: its view, or the
// dense value itself.
func (c *compiler) viewOf(v *ir.Value) (view, error) {
	if pv, ok := c.views[v]; ok {
		return pv, nil
	}
	d, err := c.dims(v)
	if err != nil {
		return view{}, err
	}
	return contiguous(v, d), nil
}

// strides4 returns a view's (batch, head, row, col) strides: a rank-3
// view has one head.
func strides4(pv view) []int64 {
	if len(pv.strides) == 3 {
		return []int64{pv.strides[0], 0, pv.strides[1], pv.strides[2]}
	}
	return pv.strides
}

// attentionMMA emits the tensor-core attention kernel for n (mmaOK).
func (c *compiler) attentionMMA(s *step) error {
	n := s.node
	a, err := ops.ParseFusedAttentionAttrs(n, c.g.Opset())
	if err != nil {
		return err
	}
	scale := a.Scale
	var r [3]ref
	var st []int64
	var vw [3]view
	for i := range 3 {
		pv, err := c.viewOf(n.Inputs[i])
		if err != nil {
			return err
		}
		if r[i], err = c.ref(pv.base); err != nil {
			return err
		}
		r[i].off += pv.off * 2
		c.use(pv.base)
		vw[i] = pv
	}
	d := vw[0].dims
	rk := len(d)
	S, D, T := d[rk-2], d[rk-1], vw[1].dims[rk-1]
	H := 1
	if rk == 4 {
		H = d[1]
	}
	B := prod(d[:rk-2])
	st = append(st, strides4(vw[0])...)
	k4 := strides4(vw[1]) // K is given as [.., D, T]: (batch, head, col, key)
	st = append(st, k4[0], k4[1], k4[3], k4[2])
	st = append(st, strides4(vw[2])...)
	var yr ref
	if t, ok := c.attOut[n]; ok {
		// Write [batch, seq, heads, dim] straight into the Transpose's output.
		var yd []int
		var err error
		if yr, yd, err = c.out(t, 0); err != nil {
			return err
		}
		if len(yd) != 4 || yd[0] != d[0] || yd[1] != S || yd[2] != H || yd[3] != D {
			return fmt.Errorf("%w: Transpose of attention output to %v", ErrGraph, yd)
		}
		st = append(st, int64(S*H*D), int64(D), int64(H*D), 1)
	} else {
		var err error
		if yr, _, err = c.out(n, 0); err != nil {
			return err
		}
		st = append(st, int64(H*S*D), int64(S*D), int64(D), 1)
	}
	var mr *ref
	meta := []int64{int64(rk - 2), 0, 0}
	if m := input(n, 3); m != nil {
		md, err := c.dims(m)
		if err != nil {
			return err
		}
		scores := append(append([]int{}, d[:rk-2]...), S, T)
		bs := ops.BroadcastStrides(md, scores)
		meta[1], meta[2] = int64(bs[len(bs)-2]), int64(bs[len(bs)-1])
		for _, v := range d[:rk-2] {
			meta = append(meta, int64(v))
		}
		for _, v := range bs[:rk-2] {
			meta = append(meta, int64(v))
		}
		rr, err := c.ref(m)
		if err != nil {
			return err
		}
		mr = &rr
	}
	args := []arg{pArg(yr), pArg(r[0]), pArg(r[1]), pArg(r[2]), optArg(mr), pArg(c.meta(meta)), pArg(c.meta(st)),
		iArg(S), iArg(T), iArg(H), fArg(scale)}
	s.launches = []launch{mmaLaunch(D, S, B, args)}
	return nil
}
