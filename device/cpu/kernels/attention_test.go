package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// attnCheck runs node n's registry kernel (named want) and its reference
// kernel on in, into garbage outputs, and compares them within tol.
func attnCheck(t *testing.T, name string, n *ir.Node, want string, tol float64, in ...*tensor.Tensor) {
	t.Helper()
	fast, impl, err := Prepare(n, 17)
	if err != nil || impl != want {
		t.Fatalf("%s: Prepare = %q, %v; want %s", name, impl, err, want)
	}
	ref, err := ops.Prepare(n, 17)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fast.Run(garbageEnv(), in)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	w, err := ref.Run(garbageEnv(), in)
	if err != nil {
		t.Fatalf("%s reference: %v", name, err)
	}
	if !slices.Equal(got[0].Shape, w[0].Shape) {
		t.Fatalf("%s: shape %v, reference %v", name, got[0].Shape, w[0].Shape)
	}
	for i, g := range got[0].Float32s() {
		wv := float64(w[0].Float32s()[i])
		if d := math.Abs(float64(g) - wv); !(d <= tol*(1+math.Abs(wv))) {
			t.Fatalf("%s: y[%d] = %v, reference %v", name, i, g, wv)
		}
	}
}

func attnRand(r *rand.Rand, shape ...int) *tensor.Tensor {
	x := tensor.New(tensor.Float32, shape...)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(r.NormFloat64())
	}
	return x
}

// attnMask is a random mask with every third element -10000 (a masked
// key).
func attnMask(r *rand.Rand, shape ...int) *tensor.Tensor {
	m := attnRand(r, shape...)
	for i := range m.Float32s() {
		if i%3 == 2 {
			m.Float32s()[i] = -10000
		}
	}
	return m
}

// TestMHARegistry: the registry's kiln::MultiHeadAttention (attnJob: per
// head and block of query rows, two GEMMs and the softmax between) matches
// the reference of ops/nn (plain loops, float64 softmax sums) at sequence
// lengths around the block rows, with masks over keys, rows, heads or all
// four axes, a mask of zeros (dropped by the fast kernel), and a scale
// attribute.
func TestMHARegistry(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, tc := range []struct {
		b, s, h, d int
		mask       []int
		zero       bool
		scale      float32
	}{
		{1, 1, 1, 8, nil, false, 0},
		{2, 7, 3, 5, []int{2, 1, 1, 7}, false, 0},
		{1, 30, 2, 8, []int{1, 2, 30, 30}, false, 0.5},
		{1, 128, 4, 32, []int{1, 1, 1, 128}, false, 0},
		{1, 128, 4, 32, []int{1, 1, 1, 128}, true, 0},
		{2, 40, 2, 16, []int{40, 40}, false, -0.2},
		{1, 65, 3, 64, nil, false, 0},
	} {
		name := fmt.Sprintf("b%d s%d h%d d%d mask %v zero %v scale %v", tc.b, tc.s, tc.h, tc.d, tc.mask, tc.zero, tc.scale)
		n := mhaNode(tc.h, tc.mask != nil)
		if tc.scale != 0 {
			n.Attrs["scale"] = &ir.Attr{Name: "scale", Type: ir.AttrFloat, F: tc.scale}
		}
		in := []*tensor.Tensor{attnRand(r, tc.b, tc.s, 3*tc.h*tc.d)}
		if tc.mask != nil {
			m := attnMask(r, tc.mask...)
			if tc.zero {
				m = tensor.New(tensor.Float32, tc.mask...)
			}
			in = append(in, m)
		}
		attnCheck(t, name, n, "cpu.MultiHeadAttention", 2e-5, in...)
	}
}

// TestAttentionRegistry: the registry's kiln::Attention matches the
// reference of ops/nn (a GEMM, the softmax rows, a GEMM) on plain heads
// (attnJob, K already transposed: queries and keys of different lengths,
// value widths other than the head size, masks over keys, rows, heads or
// all four axes) and on the shapes it leaves to the reference (3-D heads,
// a mask that enlarges the scores).
func TestAttentionRegistry(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct {
		q, k, v, mask []int
	}{
		{[]int{1, 1, 1, 8}, []int{1, 1, 8, 1}, []int{1, 1, 1, 8}, nil},
		{[]int{2, 3, 7, 5}, []int{2, 3, 5, 7}, []int{2, 3, 7, 4}, []int{2, 1, 1, 7}},
		{[]int{1, 2, 7, 8}, []int{1, 2, 8, 30}, []int{1, 2, 30, 16}, []int{1, 2, 7, 30}},
		{[]int{1, 4, 128, 32}, []int{1, 4, 32, 128}, []int{1, 4, 128, 32}, []int{1, 1, 1, 128}},
		{[]int{2, 2, 128, 16}, []int{2, 2, 16, 64}, []int{2, 2, 64, 8}, []int{128, 64}},
		{[]int{1, 3, 40, 64}, []int{1, 3, 64, 128}, []int{1, 3, 128, 64}, nil},
		{[]int{3, 7, 5}, []int{3, 5, 9}, []int{3, 9, 4}, []int{3, 1, 9}},             // 3-D: the reference
		{[]int{1, 1, 4, 8}, []int{1, 1, 8, 6}, []int{1, 1, 6, 8}, []int{2, 1, 4, 6}}, // the mask enlarges
	} {
		name := fmt.Sprintf("q%v k%v v%v mask %v", tc.q, tc.k, tc.v, tc.mask)
		in := []*tensor.Tensor{attnRand(r, tc.q...), attnRand(r, tc.k...), attnRand(r, tc.v...)}
		if tc.mask != nil {
			in = append(in, attnMask(r, tc.mask...))
		}
		n := &ir.Node{Name: "attn", Domain: "kiln", OpType: "Attention", Outputs: []*ir.Value{{Name: "y"}},
			Attrs: map[string]*ir.Attr{"scale": {Name: "scale", Type: ir.AttrFloat, F: 0.3}}}
		for i := range in {
			n.Inputs = append(n.Inputs, &ir.Value{Name: fmt.Sprint("in", i), Type: ir.Type{DType: tensor.Float32}})
		}
		attnCheck(t, name, n, "cpu.Attention", 2e-5, in...)
	}
}
