package norm

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// groupNormOp is InstanceNormalization (one group per channel) and
// GroupNormalization: X of shape [N, C, D1, ...] is normalized over each
// group of C/G channels and all spatial positions of each batch item, then
// scaled and shifted per channel (perGroup: per group, GroupNormalization
// opset 18).
type groupNormOp struct {
	name     string
	epsilon  float64
	groups   int  // 0: one per channel (InstanceNormalization)
	perGroup bool // scale and bias have one element per group
}

func prepareInstanceNorm(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseInstanceNormAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &groupNormOp{name: "InstanceNormalization", epsilon: float64(a.Epsilon)}, nil
}

// instanceNormAttrs is InstanceNormalization's Def.Attrs.
func instanceNormAttrs(n *ir.Node, opset int64) (any, error) {
	return ops.ParseInstanceNormAttrs(n, opset)
}

func prepareGroupNorm(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseGroupNormAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &groupNormOp{name: "GroupNormalization", epsilon: float64(a.Epsilon), groups: a.NumGroups, perGroup: a.PerGroup}, nil
}

func (k *groupNormOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues(k.name, in, 3); err != nil {
		return nil, err
	}
	x := in[0].Type
	if x.DType != tensor.Undefined && !isFloatType(x.DType) {
		return nil, fmt.Errorf("%w: %s of %v", ops.ErrBadInput, k.name, x.DType)
	}
	if x.Shape != nil && len(x.Shape) < 2 {
		return nil, fmt.Errorf("%w: %s input of rank %d, want >= 2", ops.ErrBadInput, k.name, len(x.Shape))
	}
	return []ir.Type{{DType: x.DType, Shape: x.Shape.Clone()}}, nil
}

func (k *groupNormOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needTensors(k.name, in, 3); err != nil {
		return nil, err
	}
	x := in[0]
	for i, what := range []string{"X", "scale", "B"} {
		if err := needFloat(k.name, what, in[i]); err != nil {
			return nil, err
		}
	}
	if x.Rank() < 2 {
		return nil, fmt.Errorf("%w: %s input of rank %d, want >= 2", ops.ErrBadInput, k.name, x.Rank())
	}
	n, c, s := x.Shape[0], x.Shape[1], product(x.Shape[2:])
	g := k.groups
	if g == 0 {
		g = max(c, 1) // one group per channel
	}
	if c%g != 0 {
		return nil, fmt.Errorf("%w: %s: %d channels do not split into %d groups", ops.ErrBadInput, k.name, c, g)
	}
	want, perGroup := c, k.perGroup
	if perGroup && in[1].Len() == c && in[2].Len() == c {
		perGroup = false // per-channel parameters given to the opset 18 form
	}
	if perGroup {
		want = g
	}
	for i, what := range []string{"scale", "B"} {
		if in[i+1].Len() != want {
			return nil, fmt.Errorf("%w: %s %s has %d elements, want %d", ops.ErrBadInput, k.name, what, in[i+1].Len(), want)
		}
	}
	scale, bias := float64s(in[1]), float64s(in[2])
	if perGroup { // expand to one per channel
		sc, bc := make([]float64, c), make([]float64, c)
		for ch := range sc {
			sc[ch], bc[ch] = scale[ch/(c/g)], bias[ch/(c/g)]
		}
		scale, bias = sc, bc
	}
	out, err := newFloatOut(env, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	geo := groupGeom{n: n, c: c, s: s, g: g, eps: k.epsilon}
	if out.f64 != nil {
		groupNorm(x.Float64s(), out.f64, geo, scale, bias)
	} else {
		groupNorm(float32s(x), out.f32, geo, scale, bias)
	}
	return []*tensor.Tensor{out.done()}, nil
}

// groupGeom views X as [n, c, s] with c split into g groups.
type groupGeom struct {
	n, c, s, g int
	eps        float64
}

// groupNorm normalizes each (batch item, group) block of x into y and
// applies the per-channel scale and bias.
func groupNorm[T ops.Float](x, y []T, geo groupGeom, scale, bias []float64) {
	cpg := geo.c / geo.g
	block := cpg * geo.s
	if block == 0 {
		return
	}
	parallel.For(geo.n*geo.g, max(1, rowGrain/block), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			xs, ys := x[p*block:(p+1)*block], y[p*block:(p+1)*block]
			m := sumTerms(rSum, xs) / float64(block)
			inv := 1 / math.Sqrt(sqDev(xs, m)/float64(block)+geo.eps)
			c0 := (p % geo.g) * cpg
			mt := T(m)
			for j := 0; j < cpg; j++ {
				mu, add := T(scale[c0+j]*inv), T(bias[c0+j])
				xr, yr := xs[j*geo.s:(j+1)*geo.s], ys[j*geo.s:(j+1)*geo.s]
				for i, v := range xr {
					yr[i] = (v-mt)*mu + add
				}
			}
		}
	})
}

func init() {
	ops.Register(ops.Def{Type: "InstanceNormalization", Attrs: instanceNormAttrs, Prepare: prepareInstanceNorm})
	ops.Register(ops.Def{Type: "GroupNormalization", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseGroupNormAttrs(n, opset) }, Prepare: prepareGroupNorm})
}
