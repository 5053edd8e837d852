package norm

import (
	"fmt"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// cumSumOp is CumSum: running sums along the axis given by the second
// input, optionally exclusive (each sum leaves its own element out) and
// reversed (summing from the end).
type cumSumOp struct {
	exclusive, reverse bool
}

func prepareCumSum(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseCumSumAttrs(n, opset)
	return &cumSumOp{exclusive: a.Exclusive, reverse: a.Reverse}, err
}

// cumSumAttrs is CumSum's Def.Attrs.
func cumSumAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseCumSumAttrs(n, opset) }

func (k *cumSumOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("CumSum", in, 2); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !numericType(t.DType) {
		return nil, fmt.Errorf("%w: CumSum of %v", ops.ErrBadInput, t.DType)
	}
	if c := in[1].Const; c != nil && t.Shape != nil {
		if _, err := cumSumAxis(c, len(t.Shape)); err != nil {
			return nil, err
		}
	}
	return []ir.Type{{DType: t.DType, Shape: t.Shape.Clone()}}, nil
}

// cumSumAxis reads the axis input.
func cumSumAxis(a *tensor.Tensor, rank int) (int, error) {
	if !a.DType.IsInt() || a.Len() != 1 || a.Rank() > 1 {
		return 0, fmt.Errorf("%w: CumSum axis must be an integer scalar, got %v%v", ops.ErrBadInput, a.DType, a.Shape)
	}
	return normAxis("CumSum", a.Int(0), rank)
}

func (k *cumSumOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needTensors("CumSum", in, 2); err != nil {
		return nil, err
	}
	x := in[0]
	if !numericType(x.DType) {
		return nil, fmt.Errorf("%w: CumSum of %v", ops.ErrBadInput, x.DType)
	}
	ax, err := cumSumAxis(in[1], x.Rank())
	if err != nil {
		return nil, err
	}
	g := cumGeom{outer: product(x.Shape[:ax]), n: x.Shape[ax], inner: product(x.Shape[ax+1:]), exclusive: k.exclusive, reverse: k.reverse}
	if x.DType == tensor.Float16 || x.DType == tensor.BFloat16 {
		out, err := newFloatOut(nil, x.DType, x.Shape)
		if err != nil {
			return nil, err
		}
		cumSum(float32s(x), out.f32, g)
		return []*tensor.Tensor{out.done()}, nil
	}
	out, err := tensor.Make(x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	switch x.DType {
	case tensor.Float32:
		cumSum(x.Float32s(), out.Float32s(), g)
	case tensor.Float64:
		cumSum(x.Float64s(), out.Float64s(), g)
	case tensor.Int8:
		cumSum(x.Int8s(), out.Int8s(), g)
	case tensor.Int16:
		cumSum(x.Int16s(), out.Int16s(), g)
	case tensor.Int32:
		cumSum(x.Int32s(), out.Int32s(), g)
	case tensor.Int64:
		cumSum(x.Int64s(), out.Int64s(), g)
	case tensor.Uint8:
		cumSum(x.Uint8s(), out.Uint8s(), g)
	case tensor.Uint16:
		cumSum(x.Uint16s(), out.Uint16s(), g)
	case tensor.Uint32:
		cumSum(x.Uint32s(), out.Uint32s(), g)
	case tensor.Uint64:
		cumSum(x.Uint64s(), out.Uint64s(), g)
	}
	return []*tensor.Tensor{out}, nil
}

// cumGeom views a CumSum input as [outer, n, inner], summing along n.
type cumGeom struct {
	outer, n, inner    int
	exclusive, reverse bool
}

// cumSum computes the running sums of x into y, a whole inner row at a time.
func cumSum[T ops.Number](x, y []T, g cumGeom) {
	if len(x) == 0 {
		return
	}
	parallel.For(g.outer, max(1, rowGrain/(g.n*g.inner)), func(lo, hi int) {
		acc := make([]T, g.inner)
		for o := lo; o < hi; o++ {
			clear(acc)
			for s := 0; s < g.n; s++ {
				j := s
				if g.reverse {
					j = g.n - 1 - s
				}
				off := (o*g.n + j) * g.inner
				xr, yr := x[off:off+g.inner], y[off:off+g.inner]
				if g.exclusive {
					for i, v := range xr {
						yr[i] = acc[i]
						acc[i] += v
					}
				} else {
					for i, v := range xr {
						acc[i] += v
						yr[i] = acc[i]
					}
				}
			}
		}
	})
}

func init() {
	ops.Register(ops.Def{Type: "CumSum", Attrs: cumSumAttrs, Prepare: prepareCumSum})
}
