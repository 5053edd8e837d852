package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestEpilogueParallel runs each activation's three entry points (apply,
// applyBias, applyAdd) over arrays large enough to be split between
// goroutines and compares every element with the float64 reference.
func TestEpilogueParallel(t *testing.T) {
	const rows, n = 300, 97
	r := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, rows*n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 3)
	}
	x[5] = 0
	bias := make([]float32, n)
	for i := range bias {
		bias[i] = float32(r.NormFloat64())
	}
	for _, a := range fusedActs {
		e := epilogue{act: a.act}
		if len(a.params) > 0 {
			e.p0 = a.params[0]
		}
		if len(a.params) > 1 {
			e.p1 = a.params[1]
		}
		for _, c := range []struct {
			name string
			run  func(y []float32)
			pre  func(i int) float64 // the activation's argument at i
		}{
			{"apply", e.apply, func(i int) float64 { return float64(x[i]) }},
			{"applyBias", func(y []float32) { e.applyBias(y, bias, n) }, func(i int) float64 { return float64(x[i] + bias[i%n]) }},
			{"applyAdd", func(y []float32) { e.applyAdd(y, x) }, func(i int) float64 { return float64(x[i] + x[i]) }},
		} {
			y := append([]float32(nil), x...)
			c.run(y)
			for i, got := range y {
				want := refAct(a.act, a.params, c.pre(i))
				if d := math.Abs(float64(got) - want); !(d <= 1e-6+1e-6*math.Abs(want)) {
					t.Fatalf("%s %q: element %d = %g, want %g", c.name, a.act, i, got, want)
				}
			}
		}
	}
}

// poisonEnv returns an Env whose allocator hands out NaN-filled tensors,
// as arena memory with stale contents would be.
func poisonEnv() *ops.Env {
	return &ops.Env{Alloc: func(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
		t, err := tensor.Make(dt, shape)
		if err == nil && dt == tensor.Float32 {
			for i := range t.Float32s() {
				t.Float32s()[i] = float32(math.NaN())
			}
		}
		return t, err
	}}
}

// TestAttentionRowsSplit runs Attention on enough rows for the softmax to
// be split between goroutines (rows starting past 0 must find their mask
// row), with and without a mask and with a negative scale, into poisoned
// output memory.
func TestAttentionRowsSplit(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	q := randTensor(r, tensor.Float32, 2, 3, 100, 4)
	k := randTensor(r, tensor.Float32, 2, 3, 4, 8)
	v := randTensor(r, tensor.Float32, 2, 3, 8, 5)
	mask := randTensor(r, tensor.Float32, 2, 1, 1, 8)
	mask.Float32s()[3] = -10000
	for _, c := range []struct {
		name  string
		mask  *tensor.Tensor
		scale float32
	}{
		{"mask", mask, 0.5},
		{"no mask", nil, 0.5},
		{"negative scale", nil, -0.25},
		{"negative scale and mask", mask, -0.25},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := []*tensor.Tensor{q, k, v}
			if c.mask != nil {
				in = append(in, c.mask)
			}
			kern, err := prepareAttention(&ir.Node{Domain: FusedDomain, OpType: "Attention",
				Attrs: map[string]*ir.Attr{"scale": {Name: "scale", Type: ir.AttrFloat, F: c.scale}}}, 13)
			if err != nil {
				t.Fatal(err)
			}
			got, err := kern.Run(poisonEnv(), in)
			if err != nil {
				t.Fatal(err)
			}
			closeTo(t, "Attention", got[0], []int{2, 3, 100, 5}, refAttention(q, k, v, c.mask, float64(c.scale)), 1e-5)
		})
	}
}

// TestGeluPoisoned checks that kiln::Gelu writes every element of arena
// memory with stale contents.
func TestGeluPoisoned(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	x := randTensor(r, tensor.Float32, 70, 131)
	for _, approx := range []string{"none", "tanh"} {
		kern, err := prepareGelu(&ir.Node{Domain: FusedDomain, OpType: "Gelu",
			Attrs: map[string]*ir.Attr{"approximate": ir.StringAttr("approximate", approx)}}, 13)
		if err != nil {
			t.Fatal(err)
		}
		got, err := kern.Run(poisonEnv(), []*tensor.Tensor{x})
		if err != nil {
			t.Fatal(err)
		}
		act := ActGelu
		if approx == "tanh" {
			act = ActGeluTanh
		}
		want := make([]float64, x.Len())
		for i, v := range x.Float32s() {
			want[i] = refAct(act, nil, float64(v))
		}
		closeTo(t, "Gelu "+approx, got[0], x.Shape, want, 1e-6)
	}
}
