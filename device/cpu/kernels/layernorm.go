package kernels

import (
	"fmt"
	"math"
	"slices"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/internal/fastmath"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// kiln::SkipLayerNormalization (ops/nn/layernorm.go defines it, its
// inference and a plain reference loop): rows over the cores from lnGrain
// elements on, each row's x + skip, sum, squared deviations and scaling in
// AVX2 loops (layernorm_amd64.s) where the machine has AVX2 and FMA.
var layerNormKernels = []Def{
	{Name: "cpu.SkipLayerNormalization", Domain: "kiln", Type: "SkipLayerNormalization", Types: []tensor.DType{tensor.Float32},
		Prepare: prepareSkipLayerNorm},
}

func prepareSkipLayerNorm(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseSkipLayerNormAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	return &skipLayerNormKernel{Kernel: ref, eps: a.Epsilon, sum: len(n.Outputs) > 1 && n.Outputs[1] != nil}, nil
}

// skipLayerNormKernel is the fast Run of kiln::SkipLayerNormalization;
// Infer, and inputs it does not take (the errors), are the reference's.
type skipLayerNormKernel struct {
	ops.Kernel
	eps float32
	sum bool // the node has the second output (x + skip)
}

func (k *skipLayerNormKernel) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) < 3 || in[0] == nil || in[2] == nil {
		return k.Kernel.Run(env, in)
	}
	x, skip, gamma := in[0], in[1], in[2]
	var beta *tensor.Tensor
	if len(in) > 3 {
		beta = in[3]
	}
	for _, t := range []*tensor.Tensor{x, skip, gamma, beta} {
		if t != nil && t.DType != tensor.Float32 {
			return k.Kernel.Run(env, in)
		}
	}
	if x.Rank() == 0 {
		return k.Kernel.Run(env, in)
	}
	d := x.Shape[x.Rank()-1]
	if (skip != nil && !slices.Equal(skip.Shape, x.Shape)) || gamma.Rank() != 1 || gamma.Shape[0] != d ||
		(beta != nil && (beta.Rank() != 1 || beta.Shape[0] != d)) {
		return k.Kernel.Run(env, in)
	}
	y, err := ops.NewOutput(env, tensor.Float32, x.Shape)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	var sum *tensor.Tensor
	var sv []float32
	if k.sum {
		if sum, err = ops.NewOutput(env, tensor.Float32, x.Shape); err != nil {
			return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
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
		} else if sum != nil {
			copy(sum[r*d:(r+1)*d], xr) // the sum is x (it was left unwritten)
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
