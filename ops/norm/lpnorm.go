package norm

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// lpNormOp is LpNormalization: x divided by its L1 or L2 norm along axis
// (a zero norm leaves the zeros as they are).
type lpNormOp struct {
	axis int64
	p    int64
}

func prepareLpNorm(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseLpNormAttrs(n, opset)
	return &lpNormOp{axis: a.Axis, p: a.P}, err
}

func (k *lpNormOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("LpNormalization", in, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !isFloatType(t.DType) {
		return nil, fmt.Errorf("%w: LpNormalization of %v", ops.ErrBadInput, t.DType)
	}
	if _, _, err := inferAxis("LpNormalization", k.axis, t.Shape); err != nil {
		return nil, err
	}
	return []ir.Type{{DType: t.DType, Shape: t.Shape.Clone()}}, nil
}

func (k *lpNormOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needTensors("LpNormalization", in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if err := needFloat("LpNormalization", "input", x); err != nil {
		return nil, err
	}
	ax, err := normAxis("LpNormalization", k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	outer, n, inner := product(x.Shape[:ax]), x.Shape[ax], product(x.Shape[ax+1:])
	out, err := newFloatOut(nil, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	kind := rL2
	if k.p == 1 {
		kind = rL1
	}
	if out.f64 != nil {
		lpNorm(kind, x.Float64s(), out.f64, outer, n, inner)
	} else {
		lpNorm(kind, float32s(x), out.f32, outer, n, inner)
	}
	return []*tensor.Tensor{out.done()}, nil
}

// lpNorm divides x, viewed as [outer, n, inner], by its norms along n.
func lpNorm[T ops.Float](kind reduceKind, x, y []T, outer, n, inner int) {
	norms := make([]T, outer*inner)
	reduceFloat(kind, x, norms, layout{outer: outer, n: n, inner: inner})
	parallel.For(outer*n, max(1, rowGrain/max(inner, 1)), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			o := p / n
			nr := norms[o*inner : (o+1)*inner]
			xr, yr := x[p*inner:(p+1)*inner], y[p*inner:(p+1)*inner]
			for i, v := range xr {
				if nr[i] != 0 {
					yr[i] = v / nr[i]
				} else {
					yr[i] = v
				}
			}
		}
	})
}

// mvnOp is MeanVarianceNormalization: (x - mean) / (std + 1e-9), the
// statistics taken over axes (default [0, 2, 3]).
type mvnOp struct {
	axes []int64
}

func prepareMVN(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseMVNAttrs(n, opset)
	return &mvnOp{axes: a.Axes}, err
}

func (k *mvnOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("MeanVarianceNormalization", in, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !isFloatType(t.DType) {
		return nil, fmt.Errorf("%w: MeanVarianceNormalization of %v", ops.ErrBadInput, t.DType)
	}
	if t.Shape != nil {
		for _, a := range k.axes {
			if _, err := normAxis("MeanVarianceNormalization", a, len(t.Shape)); err != nil {
				return nil, err
			}
		}
	}
	return []ir.Type{{DType: t.DType, Shape: t.Shape.Clone()}}, nil
}

func (k *mvnOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "MeanVarianceNormalization"
	if err := needTensors(op, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if err := needFloat(op, "input", x); err != nil {
		return nil, err
	}
	red := make([]bool, x.Rank())
	for _, a := range k.axes {
		ax, err := normAxis(op, a, x.Rank())
		if err != nil {
			return nil, err
		}
		red[ax] = true
	}
	out, err := newFloatOut(nil, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	strides := tensor.Strides(x.Shape)
	var ks, kst, rs, rst []int
	for i, d := range x.Shape {
		if red[i] {
			rs, rst = append(rs, d), append(rst, strides[i])
		} else {
			ks, kst = append(ks, d), append(kst, strides[i])
		}
	}
	base, offs := offsets(ks, kst), offsets(rs, rst)
	if out.f64 != nil {
		mvn(x.Float64s(), out.f64, base, offs)
	} else {
		mvn(float32s(x), out.f32, base, offs)
	}
	return []*tensor.Tensor{out.done()}, nil
}

// mvn normalizes, for every o, the elements x[base[o]+offs[r]].
func mvn[T ops.Float](x, y []T, base, offs []int) {
	if len(offs) == 0 {
		return
	}
	parallel.For(len(base), max(1, rowGrain/len(offs)), func(lo, hi int) {
		for _, b := range base[lo:hi] {
			var s float64
			for _, off := range offs {
				s += float64(x[b+off])
			}
			m := s / float64(len(offs))
			var sq float64
			for _, off := range offs {
				d := float64(x[b+off]) - m
				sq += d * d
			}
			den := math.Sqrt(sq/float64(len(offs))) + 1e-9
			for _, off := range offs {
				y[b+off] = T((float64(x[b+off]) - m) / den)
			}
		}
	})
}

// lrnOp is LRN, local response normalization across channels of
// X [N, C, D1, ...]: y = x / (bias + alpha/size * sum of x^2 over the size
// neighbouring channels)^beta.
type lrnOp struct {
	size              int
	alpha, beta, bias float64
}

func prepareLRN(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseLRNAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &lrnOp{size: a.Size, alpha: float64(a.Alpha), beta: float64(a.Beta), bias: float64(a.Bias)}, nil
}

// lrnAttrs is LRN's Def.Attrs.
func lrnAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseLRNAttrs(n, opset) }

func (k *lrnOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("LRN", in, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !isFloatType(t.DType) {
		return nil, fmt.Errorf("%w: LRN of %v", ops.ErrBadInput, t.DType)
	}
	if t.Shape != nil && len(t.Shape) < 2 {
		return nil, fmt.Errorf("%w: LRN input of rank %d, want >= 2", ops.ErrBadInput, len(t.Shape))
	}
	return []ir.Type{{DType: t.DType, Shape: t.Shape.Clone()}}, nil
}

func (k *lrnOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needTensors("LRN", in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if err := needFloat("LRN", "input", x); err != nil {
		return nil, err
	}
	if x.Rank() < 2 {
		return nil, fmt.Errorf("%w: LRN input of rank %d, want >= 2", ops.ErrBadInput, x.Rank())
	}
	out, err := newFloatOut(nil, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	n, c, s := x.Shape[0], x.Shape[1], product(x.Shape[2:])
	if out.f64 != nil {
		lrn(k, x.Float64s(), out.f64, n, c, s)
	} else {
		lrn(k, float32s(x), out.f32, n, c, s)
	}
	return []*tensor.Tensor{out.done()}, nil
}

// lrn computes LRN over x viewed as [n, c, s], one channel plane of one
// batch item at a time.
func lrn[T ops.Float](k *lrnOp, x, y []T, n, c, s int) {
	lo := (k.size - 1) / 2
	hi := k.size - 1 - lo // the window of channel ch is [ch-lo, ch+hi]
	coef := k.alpha / float64(k.size)
	parallel.For(n*c, max(1, rowGrain/max(s*k.size, 1)), func(a, b int) {
		acc := make([]float64, s)
		for p := a; p < b; p++ {
			bi, ch := p/c, p%c
			clear(acc)
			for j := max(0, ch-lo); j <= min(c-1, ch+hi); j++ {
				plane := x[(bi*c+j)*s : (bi*c+j+1)*s]
				for i, v := range plane {
					acc[i] += float64(v) * float64(v)
				}
			}
			xs, ys := x[p*s:(p+1)*s], y[p*s:(p+1)*s]
			for i, v := range xs {
				ys[i] = T(float64(v) / math.Pow(k.bias+coef*acc[i], k.beta))
			}
		}
	})
}

func init() {
	ops.Register(ops.Def{Type: "LpNormalization", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseLpNormAttrs(n, opset) }, Prepare: prepareLpNorm})
	ops.Register(ops.Def{Type: "MeanVarianceNormalization", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseMVNAttrs(n, opset) }, Prepare: prepareMVN})
	ops.Register(ops.Def{Type: "LRN", Attrs: lrnAttrs, Prepare: prepareLRN})
}
