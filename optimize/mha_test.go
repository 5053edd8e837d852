package optimize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// mhaSpec is a BERT-style attention block over a packed QKV input
// [batch, seq, 3*heads*size] as exporters write it.
type mhaSpec struct {
	batch, seq, heads, size int
	// mask: "" none, "keys" [B,1,1,S], "full" [B,1,S,S], "heads" [1,H,S,S],
	// "big" [B,H,S,S] as a graph input.
	mask string
	// kPerm is K's Transpose (default 0,2,3,1); outReader adds a second
	// reader of the output Transpose.
	kPerm     []int64
	outReader bool
}

// di is ir.D of an int.
func di(n int) ir.Dim { return ir.D(int64(n)) }

func ints64c(b *ir.Builder, v ...int64) *ir.Value {
	t := tensor.New(tensor.Int64, len(v))
	copy(t.Int64s(), v)
	return b.Const("", t)
}

func (sp mhaSpec) build() *ir.Graph {
	r := rand.New(rand.NewPCG(uint64(sp.seq), 3))
	hd := sp.heads * sp.size
	b := ir.NewBuilder("g", 17)
	x := b.Input("x", tensor.Float32, di(sp.batch), di(sp.seq), di(3*hd))
	sizes := []int64{int64(hd), int64(hd), int64(hd)}
	parts := b.OpN("Split", 3, []*ir.Value{x, ints64c(b, sizes...)}, ir.IntAttr("axis", -1))
	head := func(v *ir.Value, perm []int64) *ir.Value {
		rs := b.Op("Reshape", []*ir.Value{v, ints64c(b, 0, 0, int64(sp.heads), -1)})
		return b.Op("Transpose", []*ir.Value{rs}, ir.IntsAttr("perm", perm...))
	}
	kp := sp.kPerm
	if kp == nil {
		kp = []int64{0, 2, 3, 1}
	}
	q := head(parts[0], []int64{0, 2, 1, 3})
	k := head(parts[1], kp)
	v := head(parts[2], []int64{0, 2, 1, 3})
	s := b.Op("MatMul", []*ir.Value{q, k})
	s = b.Op("Div", []*ir.Value{s, b.Const("", tensor.Scalar(tensor.Float32, math.Sqrt(float64(sp.size))))})
	var m *tensor.Tensor
	switch sp.mask {
	case "keys":
		m = f32(r, sp.batch, 1, 1, sp.seq)
	case "full":
		m = f32(r, sp.batch, 1, sp.seq, sp.seq)
	case "heads":
		m = f32(r, 1, sp.heads, sp.seq, sp.seq)
	case "big":
		s = b.Op("Add", []*ir.Value{s, b.Input("mask", tensor.Float32, di(sp.batch), di(sp.heads), di(sp.seq), di(sp.seq))})
	}
	if m != nil {
		for i := range m.Float32s() {
			if i%5 == 3 {
				m.Float32s()[i] = -10000 // masked keys
			}
		}
		s = b.Op("Add", []*ir.Value{s, b.Const("mask", m)})
	}
	p := b.Op("Softmax", []*ir.Value{s}, ir.IntAttr("axis", -1))
	o := b.Op("Transpose", []*ir.Value{b.Op("MatMul", []*ir.Value{p, v})}, ir.IntsAttr("perm", 0, 2, 1, 3))
	b.Output(b.Op("Reshape", []*ir.Value{o, ints64c(b, 0, 0, int64(hd))}), "y")
	if sp.outReader {
		b.Output(o, "heads")
	}
	return b.Graph()
}

// TestMHA checks that the mha pass replaces the whole block by one
// kiln::MultiHeadAttention and that its output equals the unfused graph's
// (ONNX Split, Reshape, Transpose, MatMul, Softmax) at sequence lengths 1,
// 7 and 128, with 1-4 heads, batches 1 and 2, without a mask and with masks
// over keys, query rows and heads; and that it leaves the block alone when
// a piece differs.
func TestMHA(t *testing.T) {
	passes := []string{"attention", "mha", "dce"}
	fused := map[string]int{"kiln::MultiHeadAttention": 1}
	var cases []passCase
	for _, sp := range []mhaSpec{
		{batch: 1, seq: 1, heads: 1, size: 8},
		{batch: 1, seq: 1, heads: 4, size: 16, mask: "keys"},
		{batch: 2, seq: 7, heads: 2, size: 8, mask: "keys"},
		{batch: 1, seq: 7, heads: 3, size: 5},
		{batch: 2, seq: 7, heads: 2, size: 4, mask: "full"},
		{batch: 1, seq: 7, heads: 2, size: 8, mask: "heads"},
		{batch: 1, seq: 128, heads: 4, size: 32, mask: "keys"},
		{batch: 2, seq: 128, heads: 2, size: 16, mask: "full"},
		{batch: 1, seq: 128, heads: 1, size: 64},
		{batch: 1, seq: 33, heads: 4, size: 16, mask: "big"},
	} {
		cases = append(cases, passCase{
			name:  fmt.Sprintf("b%d s%d h%d d%d mask %q", sp.batch, sp.seq, sp.heads, sp.size, sp.mask),
			build: sp.build, passes: passes, want: fused, inits: -1,
		})
	}
	unfused := map[string]int{"Split": 1, "Reshape": 4, "Transpose": 4, "kiln::Attention": 1}
	cases = append(cases,
		passCase{name: "K transposed otherwise", build: mhaSpec{batch: 1, seq: 4, heads: 2, size: 4, kPerm: []int64{0, 2, 1, 3}}.build,
			passes: passes, want: unfused, inits: -1},
		passCase{name: "heads read elsewhere", build: mhaSpec{batch: 1, seq: 7, heads: 2, size: 4, outReader: true}.build,
			passes: passes, want: unfused, inits: -1},
	)
	runCases(t, cases)
}

// hfAttention builds attention as Hugging Face's BERT exports write it:
// separate query, key and value projections (MatMul + bias Add), K turned
// into [B,H,D,S] by two Transposes, the scores divided by sqrt(D) and the
// extended mask [B,1,1,S] added.
func hfAttention(seq, heads, size int) func() *ir.Graph {
	return func() *ir.Graph {
		r := rand.New(rand.NewPCG(uint64(seq), 9))
		hd := heads * size
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, di(1), di(seq), di(hd))
		proj := func() *ir.Value {
			w := f32(r, hd, hd)
			for i := range w.Float32s() {
				w.Float32s()[i] /= float32(hd) // scores of a few units, as trained weights give
			}
			y := b.Op("MatMul", []*ir.Value{x, b.Const("", w)})
			return b.Op("Add", []*ir.Value{y, b.Const("", f32(r, hd))})
		}
		q, k, v := proj(), proj(), proj()
		heads4 := func(t *ir.Value) *ir.Value {
			rs := b.Op("Reshape", []*ir.Value{t, ints64c(b, 0, 0, int64(heads), int64(size))})
			return b.Op("Transpose", []*ir.Value{rs}, ir.IntsAttr("perm", 0, 2, 1, 3))
		}
		kt := b.Op("Transpose", []*ir.Value{heads4(k)}, ir.IntsAttr("perm", 0, 1, 3, 2))
		s := b.Op("MatMul", []*ir.Value{heads4(q), kt})
		s = b.Op("Div", []*ir.Value{s, b.Const("", tensor.Scalar(tensor.Float32, math.Sqrt(float64(size))))})
		m := f32(r, 1, 1, 1, seq)
		m.Float32s()[seq-1] = -10000
		s = b.Op("Add", []*ir.Value{s, b.Const("mask", m)})
		p := b.Op("Softmax", []*ir.Value{s}, ir.IntAttr("axis", -1))
		o := b.Op("Transpose", []*ir.Value{b.Op("MatMul", []*ir.Value{p, heads4(v)})}, ir.IntsAttr("perm", 0, 2, 1, 3))
		b.Output(b.Op("Reshape", []*ir.Value{o, ints64c(b, 0, 0, int64(hd))}), "y")
		return b.Graph()
	}
}

// TestMHASeparateProjections checks the whole CPU chain on Hugging Face's
// form: the transpose pass merges K's two Transposes, matmuladd and
// qkvmerge make one FusedMatMul and a Split of the three projections, and
// mha then reads Q, K and V from that one GEMM's output.
func TestMHASeparateProjections(t *testing.T) {
	passes := []string{"transpose", "matmuladd", "qkvmerge", "attention", "mha", "dce"}
	want := map[string]int{"kiln::FusedMatMul": 1, "kiln::MultiHeadAttention": 1}
	runCases(t, []passCase{
		{name: "seq 7, 2 heads of 8", build: hfAttention(7, 2, 8), passes: passes, want: want, inits: -1},
		{name: "seq 128, 4 heads of 32", build: hfAttention(128, 4, 32), passes: passes, want: want, inits: -1},
	})
}
