package nn

import (
	"math"

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
// float32 sums (the ONNX op's default stash type is float32 as well). Its
// Run is the reference; the CPU registry (device/cpu/kernels) runs the
// rows over the cores with AVX2 loops.
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

// skipLayerNorm normalizes the rows (of d elements) of x + skip (x alone
// when skip is nil) into y with gamma and beta (nil: none); sum, when not
// nil, receives x + skip: the reference, one row after another with plain
// float32 sums. The CPU registry (device/cpu/kernels) runs the rows over
// the cores with vector loops.
func skipLayerNorm(y, sum, x, skip, gamma, beta []float32, d int, eps float32) {
	if d == 0 {
		return
	}
	s := make([]float32, d)
	for r := range len(x) / d {
		xr, yr := x[r*d:(r+1)*d], y[r*d:(r+1)*d]
		var tot float32
		for i, v := range xr {
			if skip != nil {
				v += skip[r*d+i]
			}
			s[i] = v
			tot += v
		}
		if sum != nil {
			copy(sum[r*d:(r+1)*d], s)
		}
		mean := tot / float32(d)
		var sq float32
		for _, v := range s {
			sq += (v - mean) * (v - mean)
		}
		inv := float32(1 / math.Sqrt(float64(sq/float32(d)+eps)))
		for i, v := range s {
			o := (v - mean) * inv * gamma[i]
			if beta != nil {
				o += beta[i]
			}
			yr[i] = o
		}
	}
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "SkipLayerNormalization", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseSkipLayerNormAttrs(n, opset) }, Prepare: prepareSkipLayerNorm})
}
