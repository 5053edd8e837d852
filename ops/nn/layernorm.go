package nn

import (
	"math"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/internal/fastmath"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// skipLayerNormOp is kiln::SkipLayerNormalization: Y = LayerNormalization
// of X + Skip over the last axis, times Gamma plus Beta,
//
//	S = X + Skip                          (X alone when Skip is absent)
//	Y = (S - mean(S)) / sqrt(var(S) + epsilon) * Gamma + Beta
//
// the residual Add of a transformer block and the LayerNormalization after
// it in one pass over each row (optimize's skiplayernorm pass writes it).
// Inputs: X, Skip (optional, X's shape), Gamma [D], Beta [D] (optional);
// attribute epsilon (default 1e-5). The optional second output is S, for
// graphs that read the sum elsewhere too. Float32 only; the statistics are
// float32 sums (the ONNX op's default stash type is float32 as well).
type skipLayerNormOp struct {
	eps float32
	// sum: the node has the second output.
	sum bool
}

func prepareSkipLayerNorm(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseSkipLayerNormAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &skipLayerNormOp{eps: a.Epsilon, sum: len(n.Outputs) > 1 && n.Outputs[1] != nil}, nil
}

func (k *skipLayerNormOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	const op = "SkipLayerNormalization"
	if err := needValues(op, in, 1); err != nil {
		return nil, err
	}
	if value(in, 2) == nil {
		return nil, badInput("%s: input 2 (gamma) is missing", op)
	}
	for _, v := range in {
		if v != nil && v.Type.DType != tensor.Undefined && v.Type.DType != tensor.Float32 {
			return nil, badInput("%s of %v, want float32", op, v.Type.DType)
		}
	}
	x := in[0].Type.Shape
	if x != nil && len(x) == 0 {
		return nil, badInput("%s of a scalar", op)
	}
	if s := value(in, 1); s != nil && x != nil && s.Type.Shape != nil && !shapesMayEqual(s.Type.Shape, x) {
		return nil, badInput("%s skip has shape %v, want X's %v", op, s.Type.Shape, x)
	}
	for i, name := range []string{2: "gamma", 3: "beta"} {
		if v := value(in, i); name != "" && v != nil && v.Type.Shape != nil && len(v.Type.Shape) != 1 {
			return nil, badInput("%s %s has shape %v, want [D]", op, name, v.Type.Shape)
		}
	}
	t := ir.Type{DType: tensor.Float32, Shape: x.Clone()}
	if k.sum {
		return []ir.Type{t, t}, nil
	}
	return []ir.Type{t}, nil
}

func (k *skipLayerNormOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	const op = "SkipLayerNormalization"
	if err := needInputs(op, in, 1); err != nil {
		return nil, err
	}
	x, skip, gamma, beta := in[0], input(in, 1), input(in, 2), input(in, 3)
	if gamma == nil {
		return nil, badInput("%s: input 2 (gamma) is missing", op)
	}
	for _, t := range []*tensor.Tensor{x, skip, gamma, beta} {
		if t != nil && t.DType != tensor.Float32 {
			return nil, badInput("%s of %v, want float32", op, t.DType)
		}
	}
	if x.Rank() == 0 {
		return nil, badInput("%s of a scalar", op)
	}
	d := x.Shape[x.Rank()-1]
	if skip != nil && !sameShape(skip.Shape, x.Shape) {
		return nil, badInput("%s skip has shape %v, want X's %v", op, skip.Shape, x.Shape)
	}
	if gamma.Rank() != 1 || gamma.Shape[0] != d {
		return nil, badInput("%s gamma has shape %v, want [%d]", op, gamma.Shape, d)
	}
	if beta != nil && (beta.Rank() != 1 || beta.Shape[0] != d) {
		return nil, badInput("%s beta has shape %v, want [%d]", op, beta.Shape, d)
	}
	y, err := newOut(env, tensor.Float32, x.Shape)
	if err != nil {
		return nil, err
	}
	var sum *tensor.Tensor
	var sv []float32
	if k.sum {
		if sum, err = newOut(env, tensor.Float32, x.Shape); err != nil {
			return nil, err
		}
		sv = sum.Float32s()
	}
	var skv, bv []float32
	if skip != nil {
		skv = skip.Float32s()
	}
	if beta != nil {
		bv = beta.Float32s()
	}
	skipLayerNorm(y.Float32s(), sv, x.Float32s(), skv, gamma.Float32s(), bv, d, k.eps)
	if sum != nil {
		return []*tensor.Tensor{y, sum}, nil
	}
	return env.One(y), nil
}

// shapesMayEqual reports whether two symbolic shapes of known rank can be
// equal: no pair of known dimensions differs.
func shapesMayEqual(a, b ir.Shape) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Known() && b[i].Known() && a[i].Val != b[i].Val {
			return false
		}
	}
	return true
}

// lnGrain is the number of elements below which the rows of a
// SkipLayerNormalization stay on one goroutine: a row of a few hundred
// elements takes tens of nanoseconds, less than waking another core.
const lnGrain = 1 << 14

// skipLayerNorm normalizes the rows (of d elements) of x + skip (x alone
// when skip is nil) into y with gamma and beta (nil: none); sum, when not
// nil, receives x + skip. y and sum must not overlap x or skip.
func skipLayerNorm(y, sum, x, skip, gamma, beta []float32, d int, eps float32) {
	if d == 0 || len(x) == 0 {
		return
	}
	rows := len(x) / d
	grain := max(1, lnGrain/d)
	if rows <= grain || cpu.Threads() == 1 {
		// one range: on the caller, without a closure to allocate
		skipLayerNormRows(y, sum, x, skip, gamma, beta, d, eps, 0, rows)
		return
	}
	cpu.ParallelFor(rows, grain, func(lo, hi int) {
		skipLayerNormRows(y, sum, x, skip, gamma, beta, d, eps, lo, hi)
	})
}

// skipLayerNormRows is skipLayerNorm of rows [lo, hi).
func skipLayerNormRows(y, sum, x, skip, gamma, beta []float32, d int, eps float32, lo, hi int) {
	for r := lo; r < hi; r++ {
		xr := x[r*d : (r+1)*d]
		yr := y[r*d : (r+1)*d]
		s := xr
		if skip != nil {
			// x + skip goes into the sum output or into y itself:
			// normRow reads each element before writing it.
			s = yr
			if sum != nil {
				s = sum[r*d : (r+1)*d]
			}
			sk := skip[r*d : (r+1)*d]
			if k := lnVec(d); k > 0 {
				// x + skip and its sum in one pass (the values and the
				// order of the sum are normRow's)
				tot := lnAddSum(s, xr, sk, k)
				for i := k; i < d; i++ {
					s[i] = xr[i] + sk[i]
					tot += s[i]
				}
				normRowSum(yr, s, gamma, beta, eps, tot)
				continue
			}
			fastmath.ScaleAdd(s, xr, 1, sk) // x*1 + skip rounds once, as x + skip does
		}
		normRow(yr, s, gamma, beta, eps)
	}
}

// normRow sets y = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta for one
// row; y may be s.
func normRow(y, s, gamma, beta []float32, eps float32) {
	k := lnVec(len(s))
	var tot float32
	if k > 0 {
		tot = lnSum(s, k)
	}
	for _, v := range s[k:] {
		tot += v
	}
	normRowSum(y, s, gamma, beta, eps, tot)
}

// normRowSum is normRow given the sum tot of s.
func normRowSum(y, s, gamma, beta []float32, eps, tot float32) {
	d := len(s)
	y, gamma = y[:d], gamma[:d]
	if beta != nil {
		beta = beta[:d]
	}
	k := lnVec(d)
	mean := tot / float32(d)
	var sq float32
	if k > 0 {
		sq = lnSqDev(s, k, mean)
	}
	for _, v := range s[k:] {
		sq += (v - mean) * (v - mean)
	}
	inv := float32(1 / math.Sqrt(float64(sq/float32(d)+eps)))
	if k > 0 {
		lnApply(y, s, gamma, beta, k, mean, inv)
	}
	for i := k; i < d; i++ {
		v := (s[i] - mean) * inv * gamma[i]
		if beta != nil {
			v += beta[i]
		}
		y[i] = v
	}
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "SkipLayerNormalization", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseSkipLayerNormAttrs(n, opset) }, Prepare: prepareSkipLayerNorm})
}
