package norm

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// batchNormOp is BatchNormalization on X of shape [N, C, D1, ...]. In
// inference it normalizes with the given running mean and variance; in
// training mode (training_mode=1 from opset 14, extra outputs before) it
// normalizes with the batch statistics and also outputs the updated running
// mean and variance (and, before opset 14, the batch mean and variance).
type batchNormOp struct {
	epsilon, momentum float64
	training          bool
	legacyOutputs     bool // opset < 14: outputs Y, mean, var, saved_mean, saved_var
}

func prepareBatchNorm(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseBatchNormAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &batchNormOp{epsilon: float64(a.Epsilon), momentum: float64(a.Momentum), training: a.Training, legacyOutputs: a.LegacyOutputs}, nil
}

// batchNormAttrs is BatchNormalization's Def.Attrs.
func batchNormAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseBatchNormAttrs(n, opset) }

func (k *batchNormOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("BatchNormalization", in, 5); err != nil {
		return nil, err
	}
	x := in[0].Type
	if x.DType != tensor.Undefined && !isFloatType(x.DType) {
		return nil, fmt.Errorf("%w: BatchNormalization of %v", ops.ErrBadInput, x.DType)
	}
	if x.Shape != nil && len(x.Shape) < 2 {
		return nil, fmt.Errorf("%w: BatchNormalization input of rank %d, want >= 2", ops.ErrBadInput, len(x.Shape))
	}
	out := []ir.Type{{DType: x.DType, Shape: x.Shape.Clone()}}
	if k.training {
		st := ir.Type{DType: in[3].Type.DType, Shape: in[3].Type.Shape.Clone()}
		vt := ir.Type{DType: in[4].Type.DType, Shape: in[4].Type.Shape.Clone()}
		out = append(out, st, vt, st, vt)
	}
	return out, nil
}

func (k *batchNormOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "BatchNormalization"
	if err := needTensors(op, in, 5); err != nil {
		return nil, err
	}
	x := in[0]
	for i, what := range []string{"X", "scale", "B", "mean", "var"} {
		if err := needFloat(op, what, in[i]); err != nil {
			return nil, err
		}
	}
	if x.Rank() < 2 {
		return nil, fmt.Errorf("%w: %s input of rank %d, want >= 2", ops.ErrBadInput, op, x.Rank())
	}
	n, c, s := x.Shape[0], x.Shape[1], product(x.Shape[2:])
	f := in[1].Len()
	switch {
	case f == c:
	case f == c*s && s > 1: // spatial=0: statistics per activation
		c, s = c*s, 1
	default:
		return nil, fmt.Errorf("%w: %s scale has %d elements for %d channels of %v", ops.ErrBadInput, op, f, c, x.Shape)
	}
	for i, what := range []string{"B", "mean", "var"} {
		if in[i+2].Len() != f {
			return nil, fmt.Errorf("%w: %s %s has %d elements, want %d", ops.ErrBadInput, op, what, in[i+2].Len(), f)
		}
	}
	scale, bias, mean, vr := float64s(in[1]), float64s(in[2]), float64s(in[3]), float64s(in[4])
	var bmean, bvar []float64
	if k.training {
		bmean, bvar = make([]float64, c), make([]float64, c)
		if x.DType == tensor.Float64 {
			channelStats(x.Float64s(), n, c, s, bmean, bvar)
		} else {
			channelStats(float32s(x), n, c, s, bmean, bvar)
		}
		mean, vr = bmean, bvar
	}
	// y = (x-mean)*mul + bias, per channel
	mul := make([]float64, c)
	for i := range mul {
		mul[i] = scale[i] / math.Sqrt(vr[i]+k.epsilon)
	}
	out, err := newFloatOut(env, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	if out.f64 != nil {
		affineChannels(x.Float64s(), out.f64, n, c, s, mean, mul, bias)
	} else {
		affineChannels(float32s(x), out.f32, n, c, s, mean, mul, bias)
	}
	res := []*tensor.Tensor{out.done()}
	if !k.training {
		return res, nil
	}
	rmean, rvar := float64s(in[3]), float64s(in[4])
	upd := func(like *tensor.Tensor, run, batch []float64) *tensor.Tensor {
		t := tensor.New(like.DType, like.Shape...)
		for i := range batch {
			t.SetFloat(i, run[i]*k.momentum+batch[i]*(1-k.momentum))
		}
		return t
	}
	res = append(res, upd(in[3], rmean, bmean), upd(in[4], rvar, bvar))
	if k.legacyOutputs {
		saved := func(like *tensor.Tensor, v []float64) *tensor.Tensor {
			t := tensor.New(like.DType, like.Shape...)
			for i, e := range v {
				t.SetFloat(i, e)
			}
			return t
		}
		res = append(res, saved(in[3], bmean), saved(in[4], bvar))
	}
	return res, nil
}

// channelStats computes the mean and (population) variance of each channel
// of x viewed as [n, c, s].
func channelStats[T ops.Float](x []T, n, c, s int, mean, vr []float64) {
	parallel.For(c, max(1, rowGrain/max(n*s, 1)), func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var sum float64
			for b := 0; b < n; b++ {
				sum += sumTerms(rSum, x[(b*c+ch)*s:(b*c+ch+1)*s])
			}
			cnt := float64(n * s)
			m := sum / cnt
			var sq float64
			for b := 0; b < n; b++ {
				sq += sqDev(x[(b*c+ch)*s:(b*c+ch+1)*s], m)
			}
			mean[ch], vr[ch] = m, sq/cnt
		}
	})
}

// sqDev returns the sum of (v-m)^2 over x.
func sqDev[T ops.Float](x []T, m float64) float64 {
	var s0, s1 float64
	i := 0
	for ; i+2 <= len(x); i += 2 {
		a, b := float64(x[i])-m, float64(x[i+1])-m
		s0 += a * a
		s1 += b * b
	}
	for ; i < len(x); i++ {
		a := float64(x[i]) - m
		s0 += a * a
	}
	return s0 + s1
}

// affineChannels sets y = (x-sub[ch])*mul[ch] + add[ch] for x viewed as
// [n, c, s].
func affineChannels[T ops.Float](x, y []T, n, c, s int, sub, mul, add []float64) {
	parallel.For(n*c, max(1, rowGrain/max(s, 1)), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			ch := p % c
			b, m, a := T(sub[ch]), T(mul[ch]), T(add[ch])
			xs, ys := x[p*s:(p+1)*s], y[p*s:(p+1)*s]
			for i, v := range xs {
				ys[i] = (v-b)*m + a
			}
		}
	})
}

func init() {
	ops.Register(ops.Def{Type: "BatchNormalization", Attrs: batchNormAttrs, Prepare: prepareBatchNorm})
}
