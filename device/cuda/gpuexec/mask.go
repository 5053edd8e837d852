package gpuexec

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// maskFusion lets half programs compute an integer attention mask's
// Cast, Sub (or Add) of a constant and Mul by a constant in one launch
// (mask_affine_i64_f16): BERT's extended attention mask,
// (1 - float(mask)) * -10000, three launches at every run. Tests turn it
// off to compare.
var maskFusion = true

// maskPlan is Mul(Sub(c0, Cast(x)), c1) or one of its forms (Add, operands
// either side) computed at the Cast as y = (s0 + sign*x) * s1.
type maskPlan struct {
	sub, mul     *ir.Node
	s0, sign, s1 float32
}

// planMaskAffine finds, in half programs, the Casts of an int64 value to
// float whose one reader is a Sub or Add of a scalar constant whose one
// reader is a Mul by a scalar constant (no value between them an output):
// the Cast's step launches mask_affine_i64_f16 into the Mul's output, and
// the Sub and Mul launch nothing (c.skip).
func (c *compiler) planMaskAffine() {
	c.maskAffine = map[*ir.Node]*maskPlan{}
	if !maskFusion || !c.half || c.keep {
		return
	}
	// next is the one node reading v (as input 0 or 1 of 2), when v is
	// no output and is read once.
	next := func(v *ir.Value) (*ir.Node, int) {
		if v == nil || c.outs[v] || len(c.uses[v]) != 1 {
			return nil, 0
		}
		u := c.uses[v][0]
		if u.node.Domain != "" || len(u.node.Inputs) != 2 || len(u.node.Outputs) != 1 || c.skip[u.node] {
			return nil, 0
		}
		return u.node, u.idx
	}
	for _, n := range c.g.Nodes {
		if n.Domain != "" || n.OpType != "Cast" || len(n.Inputs) != 1 || len(n.Outputs) != 1 || c.skip[n] {
			continue
		}
		x, y := n.Inputs[0], n.Outputs[0]
		if x == nil || y == nil || dtypeOf(x) != tensor.Int64 || y.Type.DType != tensor.Float32 {
			continue
		}
		sub, i := next(y)
		if sub == nil || (sub.OpType != "Sub" && sub.OpType != "Add") {
			continue
		}
		c0, ok := scalarConst(sub.Inputs[1-i])
		if !ok || !sameShape(c, sub.Outputs[0], y) {
			continue
		}
		p := &maskPlan{sub: sub, s0: c0, sign: 1, s1: 1}
		switch {
		case sub.OpType == "Sub" && i == 1: // c0 - x
			p.sign = -1
		case sub.OpType == "Sub": // x - c0
			p.s0 = -c0
		}
		mul, j := next(sub.Outputs[0])
		if mul == nil || mul.OpType != "Mul" {
			continue
		}
		c1, ok := scalarConst(mul.Inputs[1-j])
		if !ok || !sameShape(c, mul.Outputs[0], y) {
			continue
		}
		p.mul, p.s1 = mul, c1
		c.maskAffine[n] = p
		c.skip[sub] = true
		c.skip[mul] = true
	}
}

// scalarConst is the value of a float32 constant of one element.
func scalarConst(v *ir.Value) (float32, bool) {
	if v == nil || v.Const == nil || v.Const.DType != tensor.Float32 || v.Const.Len() != 1 {
		return 0, false
	}
	return v.Const.Float32s()[0], true
}

// sameShape reports whether a and b have the same known dims.
func sameShape(c *compiler, a, b *ir.Value) bool {
	ad, err := c.dims(a)
	if err != nil {
		return false
	}
	bd, err := c.dims(b)
	return err == nil && sameDims(ad, bd)
}

// emitMaskAffine emits the Cast step n of plan p: mask_affine_i64_f16
// from the Cast's input into the Mul's output.
func (c *compiler) emitMaskAffine(s *step, p *maskPlan) error {
	xr, err := c.ref(s.node.Inputs[0])
	if err != nil {
		return err
	}
	yr, dims, err := c.out(p.mul, 0)
	if err != nil {
		return err
	}
	n := prod(dims)
	s.launches = []launch{elemLaunch("mask_affine_i64_f16", n, pArg(yr), pArg(xr), lArg(n), fArg(p.s0), fArg(p.sign), fArg(p.s1))}
	return nil
}
