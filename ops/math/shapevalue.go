package math

import (
	"strconv"
	"strings"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Shape arithmetic: models compute new shapes from old ones (Shape, Gather,
// Mul, Div, Concat, Reshape). These ShapeValue methods carry symbolic dims
// such as "batch" through the arithmetic, so that the reshaped tensors keep
// them.

// valueDims returns the elements of a 0-D or 1-D integer value as dims,
// from its constant contents or its ShapeValue; sym says the latter.
func valueDims(v *ir.Value) (dims []ir.Dim, sym, ok bool) {
	if v == nil || len(v.Type.Shape) > 1 {
		return nil, false, false
	}
	if v.Const != nil {
		if !v.Const.DType.IsInt() || v.Const.Rank() > 1 {
			return nil, false, false
		}
		for _, x := range v.Const.Ints() {
			dims = append(dims, ir.Dim{Val: max(x, -1)}) // negative: unknown
		}
		return dims, false, true
	}
	if v.ShapeValue != nil {
		return v.ShapeValue, true, true
	}
	return nil, false, false
}

// symArith applies op to two dims; a result it cannot know is unknown.
func symArith(op arithOp, a, b ir.Dim) ir.Dim {
	if a.Known() && b.Known() {
		if v := intArith[int64](op)(a.Val, b.Val); v >= 0 {
			return ir.D(v)
		}
		return ir.U()
	}
	switch op {
	case opMul:
		return ir.MulDims(a, b) // unknown when either is
	case opAdd:
		if b.Known() && b.Val == 0 {
			return a
		}
		if a.Known() && a.Val == 0 {
			return b
		}
	case opSub:
		if b.Known() && b.Val == 0 {
			return a
		}
		if a.Symbolic() && a.Sym == b.Sym {
			return ir.D(0)
		}
	case opDiv:
		if b.Known() && b.Val == 1 {
			return a
		}
		if a.Symbolic() && b.Symbolic() && a.Sym == b.Sym {
			return ir.D(1)
		}
		if a.Symbolic() && b.Known() && b.Val > 0 {
			if s, ok := strings.CutSuffix(a.Sym, "*"+strconv.FormatInt(b.Val, 10)); ok {
				return ir.S(s)
			}
		}
	}
	return ir.U()
}

// ShapeValue computes Add, Sub, Mul and Div of integer shape values.
func (k *arith) ShapeValue(in []*ir.Value) []ir.Dim {
	if len(in) != 2 || k.op > opDiv || k.legacy.on {
		return nil
	}
	for _, v := range in {
		if v == nil || (v.Type.DType != tensor.Int64 && v.Type.DType != tensor.Int32) {
			return nil
		}
	}
	a, symA, okA := valueDims(in[0])
	b, symB, okB := valueDims(in[1])
	if !okA || !okB || !symA && !symB {
		return nil
	}
	n := max(len(a), len(b))
	if (len(a) != n && len(a) != 1) || (len(b) != n && len(b) != 1) {
		return nil
	}
	out := make([]ir.Dim, n)
	for i := range out {
		out[i] = symArith(k.op, a[min(i, len(a)-1)], b[min(i, len(b)-1)])
	}
	return out
}

// ShapeValue selects between integer shape values with a constant condition.
func (where) ShapeValue(in []*ir.Value) []ir.Dim {
	if len(in) != 3 || in[0] == nil || in[0].Const == nil || in[0].Const.Rank() > 1 {
		return nil
	}
	x, symX, okX := valueDims(in[1])
	y, symY, okY := valueDims(in[2])
	if !okX || !okY || !symX && !symY {
		return nil
	}
	c := in[0].Const
	n := max(c.Len(), len(x), len(y))
	for _, l := range []int{c.Len(), len(x), len(y)} {
		if l != n && l != 1 {
			return nil
		}
	}
	out := make([]ir.Dim, n)
	for i := range out {
		if c.Float(min(i, c.Len()-1)) != 0 {
			out[i] = x[min(i, len(x)-1)]
		} else {
			out[i] = y[min(i, len(y)-1)]
		}
	}
	return out
}
