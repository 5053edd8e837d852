package norm

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// layerNormOp is LayerNormalization: each row of X (the dims from axis on,
// flattened) is normalized to zero mean and unit variance, then multiplied
// by Scale and shifted by B (both broadcast to the normalized shape). The
// optional outputs Mean and InvStdDev (of the stash type) hold the row
// statistics, with the normalized dims kept as 1.
type layerNormOp struct {
	axis    int64
	epsilon float64
	stash   tensor.DType
}

func prepareLayerNorm(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseLayerNormAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &layerNormOp{axis: a.Axis, epsilon: float64(a.Epsilon), stash: a.StashType}, nil
}

// layerNormAttrs is LayerNormalization's Def.Attrs.
func layerNormAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseLayerNormAttrs(n, opset) }

func (k *layerNormOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("LayerNormalization", in, 2); err != nil {
		return nil, err
	}
	x := in[0].Type
	if x.DType != tensor.Undefined && !isFloatType(x.DType) {
		return nil, fmt.Errorf("%w: LayerNormalization of %v", ops.ErrBadInput, x.DType)
	}
	stat := ir.Type{DType: k.stash}
	ax, ok, err := inferAxis("LayerNormalization", k.axis, x.Shape)
	if err != nil {
		return nil, err
	}
	if ok {
		stat.Shape = onesFrom(x.Shape, ax)
	}
	return []ir.Type{{DType: x.DType, Shape: x.Shape.Clone()}, stat, stat}, nil
}

// expandParam returns the elements of p broadcast (numpy-style, p's dims
// aligned to the right) to shape target, or false when p does not fit.
func expandParam[T any](vals []T, shape, target []int) ([]T, bool) {
	if len(shape) > len(target) {
		for _, d := range shape[:len(shape)-len(target)] {
			if d != 1 {
				return nil, false
			}
		}
		shape = shape[len(shape)-len(target):]
	}
	off := len(target) - len(shape)
	same := len(shape) == len(target)
	for i, d := range shape {
		if d != target[off+i] {
			same = false
			if d != 1 {
				return nil, false
			}
		}
	}
	n := product(target)
	if same || len(vals) == n {
		return vals, true
	}
	st := ops.BroadcastStrides(shape, target)
	out := make([]T, n)
	idx := make([]int, len(target))
	src := 0
	for i := range out {
		out[i] = vals[src]
		for d := len(target) - 1; d >= 0; d-- {
			idx[d]++
			src += st[d]
			if idx[d] < target[d] {
				break
			}
			src -= st[d] * target[d]
			idx[d] = 0
		}
	}
	return out, true
}

func (k *layerNormOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "LayerNormalization"
	if err := needTensors(op, in, 2); err != nil {
		return nil, err
	}
	x, sc, b := in[0], in[1], input(in, 2)
	for i, t := range []*tensor.Tensor{x, sc, b} {
		if t != nil {
			if err := needFloat(op, fmt.Sprintf("input %d", i), t); err != nil {
				return nil, err
			}
		}
	}
	ax, err := normAxis(op, k.axis, x.Rank())
	if err != nil {
		return nil, err
	}
	rows := product(x.Shape[:ax])
	out, err := newFloatOut(env, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	mean, inv := make([]float64, rows), make([]float64, rows)
	if out.f64 != nil {
		err = layerNormRun(x.Float64s(), out.f64, x.Shape, ax, sc, b, float64s, k.epsilon, mean, inv)
	} else {
		err = layerNormRun(float32s(x), out.f32, x.Shape, ax, sc, b, float32s, k.epsilon, mean, inv)
	}
	if err != nil {
		return nil, err
	}
	statShape := append([]int{}, x.Shape...)
	for i := ax; i < len(statShape); i++ {
		statShape[i] = 1
	}
	res := []*tensor.Tensor{out.done()}
	for _, v := range [][]float64{mean, inv} {
		t, err := ops.NewOutput(env, k.stash, statShape)
		if err != nil {
			return nil, err
		}
		for i, e := range v {
			t.SetFloat(i, e)
		}
		res = append(res, t)
	}
	return res, nil
}

// layerNormRun normalizes the rows of x (shape, rows from axis ax on) into
// y with scale and optional bias, storing each row's mean and inverse
// standard deviation.
func layerNormRun[T ops.Float](x, y []T, shape []int, ax int, sc, b *tensor.Tensor, conv func(*tensor.Tensor) []T, eps float64, mean, inv []float64) error {
	const op = "LayerNormalization"
	rows, d := product(shape[:ax]), product(shape[ax:])
	norm := shape[ax:]
	// Parameters broadcast to the normalized shape (one per row element),
	// or, failing that, to the whole input (one per element).
	param := func(t *tensor.Tensor, what string) ([]T, bool, error) {
		if t == nil {
			return nil, false, nil
		}
		v := conv(t)
		if e, ok := expandParam(v, t.Shape, norm); ok {
			return e, false, nil
		}
		if e, ok := expandParam(v, t.Shape, shape); ok {
			return e, true, nil
		}
		return nil, false, fmt.Errorf("%w: %s %s of shape %v does not broadcast to %v", ops.ErrBadInput, op, what, t.Shape, shape)
	}
	scale, scaleFull, err := param(sc, "Scale")
	if err != nil {
		return err
	}
	bias, biasFull, err := param(b, "B")
	if err != nil {
		return err
	}
	if d == 0 {
		for r := range mean {
			mean[r], inv[r] = math.NaN(), math.NaN()
		}
		return nil
	}
	parallel.For(rows, max(1, rowGrain/d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*d:(r+1)*d], y[r*d:(r+1)*d]
			m := sumTerms(rSum, xr) / float64(d)
			iv := 1 / math.Sqrt(sqDev(xr, m)/float64(d)+eps)
			mean[r], inv[r] = m, iv
			s := scale
			if scaleFull {
				s = scale[r*d : (r+1)*d]
			}
			mt, it := T(m), T(iv)
			s = s[:len(xr)]
			if bias == nil {
				for i, v := range xr {
					yr[i] = (v - mt) * it * s[i]
				}
				continue
			}
			bb := bias
			if biasFull {
				bb = bias[r*d : (r+1)*d]
			}
			bb = bb[:len(xr)]
			for i, v := range xr {
				yr[i] = (v-mt)*it*s[i] + bb[i]
			}
		}
	})
	return nil
}

func init() {
	ops.Register(ops.Def{Type: "LayerNormalization", Attrs: layerNormAttrs, Prepare: prepareLayerNorm})
}
