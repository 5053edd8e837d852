package control

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func moments(t *tensor.Tensor) (mean, variance float64) {
	n := float64(t.Len())
	for i := range t.Len() {
		mean += t.Float(i)
	}
	mean /= n
	for i := range t.Len() {
		d := t.Float(i) - mean
		variance += d * d
	}
	return mean, variance / n
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %g, want %g ± %g", what, got, want, tol)
	}
}

func TestRandomDistributions(t *testing.T) {
	const n = 20000
	big := tensor.New(tensor.Float64, 100, n/100)
	cases := []struct {
		name      string
		node      *ir.Node
		in        []*tensor.Tensor
		dt        tensor.DType
		mean, std float64
		lo, hi    float64
	}{
		{"RandomNormal", opstest.Node("RandomNormal", 0, 1, opstest.Ints("shape", 4, n/4),
			opstest.Float("mean", 2), opstest.Float("scale", 3), opstest.Float("seed", 1)), nil,
			tensor.Float32, 2, 3, math.Inf(-1), math.Inf(1)},
		{"RandomUniform", opstest.Node("RandomUniform", 0, 1, opstest.Ints("shape", n),
			opstest.Float("low", -1), opstest.Float("high", 3), opstest.Float("seed", 7),
			opstest.Int("dtype", int64(tensor.Float64))), nil,
			tensor.Float64, 1, 4 / math.Sqrt(12), -1, 3},
		{"RandomNormalLike", opstest.Node("RandomNormalLike", 1, 1, opstest.Float("seed", 3)),
			[]*tensor.Tensor{big}, tensor.Float64, 0, 1, math.Inf(-1), math.Inf(1)},
		{"RandomUniformLike float16", opstest.Node("RandomUniformLike", 1, 1, opstest.Float("seed", 3),
			opstest.Int("dtype", int64(tensor.Float16))), []*tensor.Tensor{tensor.New(tensor.Int32, n)},
			tensor.Float16, 0.5, 1 / math.Sqrt(12), 0, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := opstest.Run(t, c.node, 17, c.in...)[0]
			if out.DType != c.dt || out.Len() != n {
				t.Fatalf("output %v%v, want %v with %d elements", out.DType, out.Shape, c.dt, n)
			}
			mean, v := moments(out)
			near(t, "mean", mean, c.mean, 0.05*c.std+0.01)
			near(t, "std", math.Sqrt(v), c.std, 0.05*c.std)
			for i := range out.Len() {
				if x := out.Float(i); x < c.lo || x > c.hi || math.IsNaN(x) {
					t.Fatalf("element %d = %g outside [%g, %g]", i, x, c.lo, c.hi)
				}
			}
			// a seeded node draws the same values every run
			again := opstest.Run(t, c.node, 17, c.in...)[0]
			if err := opstest.Close(again, out, 0, 0); err != nil {
				t.Fatalf("second run with the same seed: %v", err)
			}
			// and another seed other values
			other := *c.node
			other.Attrs = map[string]*ir.Attr{}
			for k, a := range c.node.Attrs {
				other.Attrs[k] = a
			}
			other.Attrs["seed"] = opstest.Float("seed", 12345)
			if opstest.Close(opstest.Run(t, &other, 17, c.in...)[0], out, 0, 0) == nil {
				t.Fatal("another seed gave the same values")
			}
			// without a seed two runs differ
			delete(other.Attrs, "seed")
			a, b := opstest.Run(t, &other, 17, c.in...)[0], opstest.Run(t, &other, 17, c.in...)[0]
			if opstest.Close(a, b, 0, 0) == nil {
				t.Fatal("two unseeded runs gave the same values")
			}
		})
	}
}

func TestBernoulli(t *testing.T) {
	const n = 20000
	p := tensor.New(tensor.Float32, 2, n/2)
	ps := p.Float32s()
	for i := range ps {
		if i < n/2 {
			ps[i] = 0.3
		} else {
			ps[i] = float32(i%3) / 2 // 0, 0.5, 1
		}
	}
	out := opstest.Run(t, opstest.Node("Bernoulli", 1, 1, opstest.Float("seed", 5)), 15, p)[0]
	if out.DType != tensor.Float32 {
		t.Fatalf("dtype %v, want float32", out.DType)
	}
	sum := 0.0
	for i := range n / 2 {
		sum += out.Float(i)
	}
	near(t, "mean at p=0.3", sum/(n/2), 0.3, 0.02)
	var half, halfN float64
	for i := n / 2; i < n; i++ {
		v := out.Float(i)
		if v != 0 && v != 1 {
			t.Fatalf("element %d = %g", i, v)
		}
		switch i % 3 {
		case 0:
			if v != 0 {
				t.Fatalf("p=0 gave 1 at %d", i)
			}
		case 2:
			if v != 1 {
				t.Fatalf("p=1 gave 0 at %d", i)
			}
		case 1:
			half += v
			halfN++
		}
	}
	near(t, "mean at p=0.5", half/halfN, 0.5, 0.03)

	b := opstest.Run(t, opstest.Node("Bernoulli", 1, 1, opstest.Int("dtype", int64(tensor.Bool))), 15,
		tensor.FromFloat32([]float32{0, 1}, 2))[0]
	if b.DType != tensor.Bool || b.Bools()[0] || !b.Bools()[1] {
		t.Fatalf("bool Bernoulli of [0 1] = %v", b)
	}
	for name, in := range map[string]*tensor.Tensor{
		"p > 1":     tensor.FromFloat32([]float32{0.5, 1.5}, 2),
		"NaN":       tensor.FromFloat32([]float32{float32(math.NaN())}, 1),
		"int input": tensor.FromInt64([]int64{1}, 1),
	} {
		if _, err := opstest.Exec(opstest.Node("Bernoulli", 1, 1), 15, in); !errors.Is(err, ops.ErrBadInput) {
			t.Errorf("%s: err = %v, want ErrBadInput", name, err)
		}
	}
	if _, err := ops.Prepare(opstest.Node("Bernoulli", 1, 1, opstest.Int("dtype", 99)), 15); !errors.Is(err, ops.ErrBadAttr) {
		t.Errorf("dtype 99: err = %v", err)
	}
}

func TestMultinomial(t *testing.T) {
	const samples = 20000
	probs := [][]float64{{0.2, 0.5, 0.3}, {0, 0.9, 0.1}}
	x := tensor.New(tensor.Float32, 2, 3)
	for b, row := range probs {
		for c, p := range row {
			x.Float32s()[b*3+c] = float32(math.Log(p) + 4) // unnormalized
		}
	}
	out := opstest.Run(t, opstest.Node("Multinomial", 1, 1, opstest.Int("sample_size", samples),
		opstest.Float("seed", 2), opstest.Int("dtype", int64(tensor.Int64))), 7, x)[0]
	if out.DType != tensor.Int64 || !sameDims(out.Shape, []int{2, samples}) {
		t.Fatalf("output %v%v", out.DType, out.Shape)
	}
	for b, row := range probs {
		counts := make([]float64, 3)
		for s := range samples {
			c := out.Int64s()[b*samples+s]
			if c < 0 || c > 2 {
				t.Fatalf("class %d", c)
			}
			counts[c]++
		}
		for c, p := range row {
			near(t, "frequency", counts[c]/samples, p, 0.02)
		}
		if row[0] == 0 && counts[0] != 0 {
			t.Errorf("row %d drew a class of probability 0", b)
		}
	}
	// default: int32, one sample
	d := opstest.Run(t, opstest.Node("Multinomial", 1, 1), 7, x)[0]
	if d.DType != tensor.Int32 || !sameDims(d.Shape, []int{2, 1}) {
		t.Fatalf("default output %v%v", d.DType, d.Shape)
	}
	for name, attrs := range map[string][]*ir.Attr{
		"dtype float":   {opstest.Int("dtype", int64(tensor.Float32))},
		"sample_size 0": {opstest.Int("sample_size", 0)},
	} {
		if _, err := ops.Prepare(opstest.Node("Multinomial", 1, 1, attrs...), 7); !errors.Is(err, ops.ErrBadAttr) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	for name, in := range map[string]*tensor.Tensor{
		"rank 1":     tensor.FromFloat32([]float32{1, 2}, 2),
		"no classes": tensor.New(tensor.Float32, 2, 0),
		"int":        tensor.FromInt64([]int64{1, 2}, 1, 2),
		"all -inf":   tensor.FromFloat32([]float32{float32(math.Inf(-1))}, 1, 1),
	} {
		if _, err := opstest.Exec(opstest.Node("Multinomial", 1, 1), 7, in); !errors.Is(err, ops.ErrBadInput) {
			t.Errorf("%s: err = %v, want ErrBadInput", name, err)
		}
	}
}

func TestRandomInferAndAttrs(t *testing.T) {
	k, err := ops.Prepare(opstest.Node("RandomNormalLike", 1, 1), 17)
	if err != nil {
		t.Fatal(err)
	}
	types, err := k.Infer([]*ir.Value{{Type: ir.Type{DType: tensor.Float16, Shape: ir.Shape{ir.S("batch"), ir.D(3)}}}})
	if err != nil || types[0].String() != "float16[batch,3]" {
		t.Fatalf("Infer = %v, %v", types, err)
	}
	if _, err := k.Infer([]*ir.Value{{Type: ir.Type{DType: tensor.Int64}}}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("int input without dtype: err = %v", err)
	}
	if _, err := k.Run(nil, []*tensor.Tensor{tensor.FromInt64([]int64{1}, 1)}); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("Run of an int input without dtype: err = %v", err)
	}
	mb, err := ops.Prepare(opstest.Node("Multinomial", 1, 1, opstest.Int("sample_size", 5)), 7)
	if err != nil {
		t.Fatal(err)
	}
	types, err = mb.Infer([]*ir.Value{{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("N"), ir.D(10)}}}})
	if err != nil || types[0].String() != "int32[N,5]" {
		t.Fatalf("Multinomial Infer = %v, %v", types, err)
	}
	for name, n := range map[string]*ir.Node{
		"no shape":       opstest.Node("RandomNormal", 0, 1),
		"negative shape": opstest.Node("RandomUniform", 0, 1, opstest.Ints("shape", 2, -1)),
		"int dtype":      opstest.Node("RandomUniform", 0, 1, opstest.Ints("shape", 2), opstest.Int("dtype", int64(tensor.Int32))),
		"high < low":     opstest.Node("RandomUniform", 0, 1, opstest.Ints("shape", 2), opstest.Float("low", 2), opstest.Float("high", 1)),
		"seed is int":    opstest.Node("RandomNormalLike", 1, 1, opstest.Int("seed", 1)),
	} {
		if _, err := ops.Prepare(n, 17); !errors.Is(err, ops.ErrBadAttr) {
			t.Errorf("%s: err = %v, want ErrBadAttr", name, err)
		}
	}
	for _, op := range []string{"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"} {
		k, err := ops.Prepare(opstest.Node(op, 1, 1, opstest.Ints("shape", 1)), 17)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := k.(ops.NonDeterministic); !ok {
			t.Errorf("%s is not ops.NonDeterministic", op)
		}
	}
}

// TestRandomNotFolded: a generator with no inputs must run at run time, not
// be folded into a constant at load time.
func TestRandomNotFolded(t *testing.T) {
	b := ir.NewBuilder("rand", 17)
	b.Output(b.Op("RandomUniform", nil, ir.IntsAttr("shape", 8)), "y")
	g := b.Graph()
	e, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	if g.Outputs[0].Const != nil {
		t.Fatal("RandomUniform was folded into a constant")
	}
	y1, err := e.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	y2, _ := e.Run(context.Background(), nil)
	if opstest.Close(y1["y"], y2["y"], 0, 0) == nil {
		t.Fatal("two runs gave the same values")
	}
}
