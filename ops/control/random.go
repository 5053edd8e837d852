package control

import (
	"math"
	"math/rand/v2"
	"sort"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// The generator ops draw from a PCG source. With a seed attribute every Run
// starts from the same state, so a seeded node gives the same output each
// time it runs (the values differ from numpy's, whose generator is another);
// without one each Run draws from a fresh random state. All of them are
// ops.NonDeterministic so that they are never computed at load time.

// rng returns the generator of one Run.
func rng(seeded bool, seed float32) *rand.Rand {
	if seeded {
		s := uint64(math.Float32bits(seed))
		return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
	}
	return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
}

func randomAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseRandomAttrs(n, opset) }

func isFloat(dt tensor.DType) bool {
	switch dt {
	case tensor.Float16, tensor.Float32, tensor.Float64, tensor.BFloat16:
		return true
	}
	return false
}

// distribution draws one value.
type distribution struct {
	normal bool
	a, b   float64 // mean, scale or low, high
	seeded bool
	seed   float32
	like   bool         // *Like: the shape (and by default the dtype) come from the input
	dtype  tensor.DType // Undefined: the input's (Like ops only)
	shape  []int        // not Like
	opName string
}

// NonDeterministic marks the kernel as a random generator.
func (*distribution) NonDeterministic() {}

func prepareDistribution(op string, normal, like bool) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseRandomAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		k := &distribution{normal: normal, like: like, opName: op, seeded: a.Seeded, seed: a.Seed, dtype: a.DType}
		k.a, k.b = float64(a.Low), float64(a.High)
		if normal {
			k.a, k.b = float64(a.Mean), float64(a.Scale)
		}
		for _, d := range a.Shape {
			k.shape = append(k.shape, int(d))
		}
		return k, nil
	}
}

func (k *distribution) outType(in *ir.Value) (tensor.DType, error) {
	dt := k.dtype
	if dt == tensor.Undefined && in != nil {
		dt = in.Type.DType
		if dt != tensor.Undefined && !isFloat(dt) {
			return 0, badInput("%s: input is %v; set dtype to a float type", k.opName, dt)
		}
	}
	return dt, nil
}

func (k *distribution) Infer(in []*ir.Value) ([]ir.Type, error) {
	if !k.like {
		return []ir.Type{{DType: k.dtype, Shape: ir.KnownShape(k.shape...)}}, nil
	}
	if len(in) < 1 || in[0] == nil {
		return nil, badInput("%s: input is missing", k.opName)
	}
	dt, err := k.outType(in[0])
	if err != nil {
		return nil, err
	}
	return []ir.Type{{DType: dt, Shape: in[0].Type.Shape.Clone()}}, nil
}

func (k *distribution) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	dt, shape := k.dtype, k.shape
	if k.like {
		if len(in) < 1 || in[0] == nil {
			return nil, badInput("%s: input is missing", k.opName)
		}
		shape = in[0].Shape
		if dt == tensor.Undefined {
			dt = in[0].DType
			if !isFloat(dt) {
				return nil, badInput("%s: input is %v; set dtype to a float type", k.opName, dt)
			}
		}
	}
	out, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, badInput("%s: %v", k.opName, err)
	}
	r := rng(k.seeded, k.seed)
	for i, n := 0, out.Len(); i < n; i++ {
		var v float64
		if k.normal {
			v = k.a + k.b*r.NormFloat64()
		} else {
			v = k.a + (k.b-k.a)*r.Float64()
		}
		out.SetFloat(i, v)
	}
	return []*tensor.Tensor{out}, nil
}

// bernoulliOp is ONNX Bernoulli: each output element is 1 with the
// probability given by the matching input element, else 0.
type bernoulliOp struct {
	dtype  tensor.DType // Undefined: the input's
	seeded bool
	seed   float32
}

// NonDeterministic marks the kernel as a random generator.
func (*bernoulliOp) NonDeterministic() {}

func prepareBernoulli(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseRandomAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &bernoulliOp{dtype: a.DType, seeded: a.Seeded, seed: a.Seed}, nil
}

func (k *bernoulliOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, badInput("Bernoulli: input is missing")
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && !isFloat(dt) {
		return nil, badInput("Bernoulli: input is %v, want a float type", dt)
	}
	dt := k.dtype
	if dt == tensor.Undefined {
		dt = in[0].Type.DType
	}
	return []ir.Type{{DType: dt, Shape: in[0].Type.Shape.Clone()}}, nil
}

func (k *bernoulliOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, badInput("Bernoulli: input is missing")
	}
	x := in[0]
	if err := checkTensor("Bernoulli", "input", x); err != nil {
		return nil, err
	}
	if !isFloat(x.DType) {
		return nil, badInput("Bernoulli: input is %v, want a float type", x.DType)
	}
	dt := k.dtype
	if dt == tensor.Undefined {
		dt = x.DType
	}
	out, err := tensor.Make(dt, x.Shape)
	if err != nil {
		return nil, badInput("Bernoulli: %v", err)
	}
	r := rng(k.seeded, k.seed)
	for i, n := 0, x.Len(); i < n; i++ {
		p := x.Float(i)
		if !(p >= 0 && p <= 1) {
			return nil, badInput("Bernoulli: probability %g at element %d is outside [0, 1]", p, i)
		}
		if r.Float64() < p {
			out.SetFloat(i, 1)
		}
	}
	return []*tensor.Tensor{out}, nil
}

// multinomialOp is ONNX Multinomial: for each row of unnormalized log
// probabilities [batch, classes] it draws sample_size class indices.
type multinomialOp struct {
	dtype   tensor.DType
	samples int
	seeded  bool
	seed    float32
}

// NonDeterministic marks the kernel as a random generator.
func (*multinomialOp) NonDeterministic() {}

func prepareMultinomial(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseRandomAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &multinomialOp{dtype: a.DType, samples: int(a.SampleSize), seeded: a.Seeded, seed: a.Seed}, nil
}

func (k *multinomialOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, badInput("Multinomial: input is missing")
	}
	t := in[0].Type
	if t.DType != tensor.Undefined && !isFloat(t.DType) {
		return nil, badInput("Multinomial: input is %v, want a float type", t.DType)
	}
	if t.Shape != nil && len(t.Shape) != 2 {
		return nil, badInput("Multinomial: input has rank %d, want [batch, classes]", len(t.Shape))
	}
	b := ir.U()
	if t.Shape != nil {
		b = t.Shape[0]
	}
	return []ir.Type{{DType: k.dtype, Shape: ir.Shape{b, ir.D(int64(k.samples))}}}, nil
}

func (k *multinomialOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, badInput("Multinomial: input is missing")
	}
	x := in[0]
	if err := checkTensor("Multinomial", "input", x); err != nil {
		return nil, err
	}
	if !isFloat(x.DType) || x.Rank() != 2 {
		return nil, badInput("Multinomial: input is %v%v, want float [batch, classes]", x.DType, x.Shape)
	}
	batch, classes := x.Shape[0], x.Shape[1]
	if classes == 0 && batch > 0 {
		return nil, badInput("Multinomial: input has no classes")
	}
	out, err := tensor.Make(k.dtype, []int{batch, k.samples})
	if err != nil {
		return nil, badInput("Multinomial: %v", err)
	}
	r := rng(k.seeded, k.seed)
	cdf := make([]float64, classes)
	for b := 0; b < batch; b++ {
		// softmax weights, shifted by the row max for stability
		mx := math.Inf(-1)
		for c := 0; c < classes; c++ {
			mx = math.Max(mx, x.Float(b*classes+c))
		}
		sum := 0.0
		for c := 0; c < classes; c++ {
			w := 0.0
			if !math.IsInf(mx, -1) {
				w = math.Exp(x.Float(b*classes+c) - mx)
			}
			if math.IsNaN(w) {
				return nil, badInput("Multinomial: row %d holds NaN", b)
			}
			sum += w
			cdf[c] = sum
		}
		if !(sum > 0) {
			return nil, badInput("Multinomial: row %d has no positive probability", b)
		}
		for s := 0; s < k.samples; s++ {
			u := r.Float64() * sum
			c := sort.Search(classes, func(i int) bool { return cdf[i] > u })
			c = min(c, classes-1)
			out.SetFloat(b*k.samples+s, float64(c))
		}
	}
	return []*tensor.Tensor{out}, nil
}

func init() {
	ops.Register(ops.Def{Type: "RandomNormal", Attrs: randomAttrs, Traits: ops.KeepFloat32, Prepare: prepareDistribution("RandomNormal", true, false)})
	ops.Register(ops.Def{Type: "RandomUniform", Attrs: randomAttrs, Traits: ops.KeepFloat32, Prepare: prepareDistribution("RandomUniform", false, false)})
	ops.Register(ops.Def{Type: "RandomNormalLike", Attrs: randomAttrs, Traits: ops.HasFloat16 | ops.KeepFloat32, Prepare: prepareDistribution("RandomNormalLike", true, true)})
	ops.Register(ops.Def{Type: "RandomUniformLike", Attrs: randomAttrs, Traits: ops.HasFloat16 | ops.KeepFloat32, Prepare: prepareDistribution("RandomUniformLike", false, true)})
	ops.Register(ops.Def{Type: "Bernoulli", Attrs: randomAttrs, Traits: ops.HasFloat16 | ops.KeepFloat32, Prepare: prepareBernoulli})
	ops.Register(ops.Def{Type: "Multinomial", Attrs: randomAttrs, Traits: ops.HasFloat16 | ops.KeepFloat32, Prepare: prepareMultinomial})
}
