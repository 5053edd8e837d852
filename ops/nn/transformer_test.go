package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refMHA computes kiln::MultiHeadAttention naively in float64: x [b,s,3*h*d]
// packed [Q|K|V], mask broadcast to [b,h,s,s] (or nil).
func refMHA(x, mask *tensor.Tensor, h int, scale float64) []float64 {
	b, s, c := x.Shape[0], x.Shape[1], x.Shape[2]
	hd := c / 3
	d := hd / h
	var mstr []int
	if mask != nil {
		full := []int{b, h, s, s}
		mstr = make([]int, 4)
		st := 1
		for i := mask.Rank() - 1; i >= 0; i-- {
			if mask.Shape[i] != 1 {
				mstr[4-mask.Rank()+i] = st
			}
			st *= mask.Shape[i]
		}
		_ = full
	}
	at := func(bi, j, col int) float64 { return x.Float((bi*s+j)*c + col) }
	out := make([]float64, b*s*hd)
	for bi := range b {
		for hi := range h {
			for i := range s {
				p := make([]float64, s)
				mx := math.Inf(-1)
				for j := range s {
					acc := 0.0
					for e := range d {
						acc += at(bi, i, hi*d+e) * at(bi, j, hd+hi*d+e)
					}
					acc *= scale
					if mask != nil {
						acc += mask.Float(bi*mstr[0] + hi*mstr[1] + i*mstr[2] + j*mstr[3])
					}
					p[j] = acc
					mx = math.Max(mx, acc)
				}
				sum := 0.0
				for j := range p {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				for e := range d {
					acc := 0.0
					for j := range p {
						acc += p[j] / sum * at(bi, j, 2*hd+hi*d+e)
					}
					out[(bi*s+i)*hd+hi*d+e] = acc
				}
			}
		}
	}
	return out
}

func mhaNode(heads int, attrs ...*ir.Attr) func(nIn int) *ir.Node {
	return func(nIn int) *ir.Node {
		n := opstest.Node("MultiHeadAttention", nIn, 1, append([]*ir.Attr{ir.IntAttr("num_heads", int64(heads))}, attrs...)...)
		n.Domain = FusedDomain
		return n
	}
}

// TestMultiHeadAttention compares kiln::MultiHeadAttention with a float64
// reference at sequence lengths 1, 7 and 128 (one and several query
// blocks, heads split into chunks when there are few), 1-12 heads, batches
// 1-3, without a mask and with masks over keys, rows and heads.
func TestMultiHeadAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, tc := range []struct {
		b, s, h, d int
		mask       []int // shape, nil for none
		scale      float64
	}{
		{1, 1, 1, 8, nil, 0},
		{1, 1, 2, 4, []int{1, 1, 1, 1}, 0.5},
		{2, 7, 3, 5, []int{2, 1, 1, 7}, 0},
		{1, 7, 2, 8, []int{1, 1, 7, 7}, 0},
		{3, 7, 2, 4, []int{1, 2, 7, 7}, -0.3},
		{1, 7, 12, 4, []int{7}, 0},
		{1, 128, 4, 32, []int{1, 1, 1, 128}, 0},
		{2, 128, 2, 16, []int{2, 2, 128, 128}, 0},
		{1, 100, 1, 64, nil, 0.125},
		{1, 29, 4, 16, []int{29, 29}, 0},
	} {
		name := fmt.Sprintf("b%d s%d h%d d%d mask %v", tc.b, tc.s, tc.h, tc.d, tc.mask)
		x := randTensor(r, tensor.Float32, tc.b, tc.s, 3*tc.h*tc.d)
		in := []*tensor.Tensor{x}
		var mask *tensor.Tensor
		if tc.mask != nil {
			mask = randTensor(r, tensor.Float32, tc.mask...)
			for i := range mask.Float32s() {
				if i%4 == 1 {
					mask.Float32s()[i] = -10000
				}
			}
			in = append(in, mask)
		}
		var attrs []*ir.Attr
		scale := 1 / math.Sqrt(float64(tc.d))
		if tc.scale != 0 {
			attrs = append(attrs, ir.FloatAttr("scale", float32(tc.scale)))
			scale = tc.scale
		}
		got, err := execSafe(mhaNode(tc.h, attrs...)(len(in)), 13, in...)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		closeTo(t, name, got[0], []int{tc.b, tc.s, tc.h * tc.d}, refMHA(x, mask, tc.h, scale), 1e-5)
	}
}

// refSkipLN computes kiln::SkipLayerNormalization in float64.
func refSkipLN(x, skip, gamma, beta *tensor.Tensor, eps float64) (y, sum []float64) {
	d := x.Shape[x.Rank()-1]
	n := x.Len()
	y, sum = make([]float64, n), make([]float64, n)
	for i := range sum {
		sum[i] = x.Float(i)
		if skip != nil {
			sum[i] += skip.Float(i)
		}
	}
	for r := 0; r < n/d; r++ {
		row := sum[r*d : (r+1)*d]
		m, v := 0.0, 0.0
		for _, e := range row {
			m += e
		}
		m /= float64(d)
		for _, e := range row {
			v += (e - m) * (e - m)
		}
		inv := 1 / math.Sqrt(v/float64(d)+eps)
		for j, e := range row {
			o := (e - m) * inv * gamma.Float(j)
			if beta != nil {
				o += beta.Float(j)
			}
			y[r*d+j] = o
		}
	}
	return y, sum
}

// TestSkipLayerNormalization compares kiln::SkipLayerNormalization with a
// float64 reference over widths that take the vector loop, its tail or
// only the tail, with and without skip, beta and the sum output.
func TestSkipLayerNormalization(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		shape              []int
		skip, beta, sumOut bool
	}{
		{[]int{1, 1, 128}, true, true, false},
		{[]int{2, 7, 128}, true, true, true},
		{[]int{1, 128, 768}, true, true, false},
		{[]int{3, 13}, true, false, true},
		{[]int{5, 1}, true, true, false},
		{[]int{4, 3}, false, true, false},
		{[]int{2, 24}, false, false, false},
		{[]int{300, 64}, true, true, true},
	} {
		name := fmt.Sprintf("%v skip %v beta %v sum %v", tc.shape, tc.skip, tc.beta, tc.sumOut)
		d := tc.shape[len(tc.shape)-1]
		x := randTensor(r, tensor.Float32, tc.shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] += 3 // an offset the mean must remove
		}
		var skip, beta *tensor.Tensor
		if tc.skip {
			skip = randTensor(r, tensor.Float32, tc.shape...)
		}
		gamma := randTensor(r, tensor.Float32, d)
		if tc.beta {
			beta = randTensor(r, tensor.Float32, d)
		}
		nOut := 1
		if tc.sumOut {
			nOut = 2
		}
		n := opstest.Node("SkipLayerNormalization", 4, nOut, ir.FloatAttr("epsilon", 1e-5))
		n.Domain = FusedDomain
		got, err := execSafe(n, 1, x, skip, gamma, beta)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		y, sum := refSkipLN(x, skip, gamma, beta, 1e-5)
		closeTo(t, name, got[0], tc.shape, y, 2e-5)
		if tc.sumOut {
			if len(got) != 2 {
				t.Errorf("%s: %d outputs, want 2", name, len(got))
				continue
			}
			closeTo(t, name+" sum", got[1], tc.shape, sum, 1e-6)
		}
	}
}

// TestFusedMatMulEpilogue checks FusedMatMul's reference kernel (the
// product, then the bias and the activation in one pass split over the
// cores) against MatMul then the epilogue, on one row (GEMV), small
// products, ones the pass splits over the cores, a folded batch, empty
// products, and constant weights (the reference reads them as any input;
// the CPU registry's kernel, which packs them, is checked against this one
// in device/cpu/kernels).
func TestFusedMatMulEpilogue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range []struct{ a, b []int }{
		{[]int{1, 64}, []int{64, 48}},
		{[]int{5, 3}, []int{3, 1}},
		{[]int{17, 20}, []int{20, 33}},
		{[]int{128, 128}, []int{128, 512}},
		{[]int{1, 128, 512}, []int{512, 128}},
		{[]int{2, 150, 64}, []int{64, 96}},
		{[]int{300, 70}, []int{70, 40}},
		{[]int{3, 0}, []int{0, 4}},
		{[]int{0, 5}, []int{5, 3}},
		{[]int{2, 5}, []int{5, 0}},
	} {
		for _, act := range []string{ActNone, ActGelu, ActRelu} {
			for _, bias := range []bool{true, false} {
				for _, constB := range []bool{false, true} {
					name := fmt.Sprintf("%v x %v %q bias %v const %v", s.a, s.b, act, bias, constB)
					x := randTensor(r, tensor.Float32, s.a...)
					w := randTensor(r, tensor.Float32, s.b...)
					in := []*tensor.Tensor{x, w}
					nOut := s.b[1]
					var bv *tensor.Tensor
					if bias {
						bv = randTensor(r, tensor.Float32, nOut)
						in = append(in, bv)
					}
					ref, err := execSafe(opstest.Node("MatMul", 2, 1), 13, x, w)
					if err != nil {
						t.Fatal(err)
					}
					want := floats(ref[0])
					for i := range want {
						if bias {
							want[i] += bv.Float(i % nOut)
						}
						want[i] = refAct(act, nil, want[i])
					}
					n := fusedNode("FusedMatMul", len(in), act, nil)
					if constB {
						n.Inputs[1].Const = w
					}
					k, err := prepareFusedMatMul(n, 1)
					if err != nil {
						t.Fatal(err)
					}
					got, err := k.Run(nanArena(), in)
					if err != nil {
						t.Errorf("%s: %v", name, err)
						continue
					}
					closeTo(t, name, got[0], ref[0].Shape, want, 1e-4)
				}
			}
		}
	}
}

// TestTransformerBadInput checks that the transformer ops refuse input
// they cannot compute with ErrBadInput or ErrBadAttr, never a panic.
func TestTransformerBadInput(t *testing.T) {
	f := func(shape ...int) *tensor.Tensor { return tensor.New(tensor.Float32, shape...) }
	mha := mhaNode(2)
	sln := func(nIn int) *ir.Node {
		n := opstest.Node("SkipLayerNormalization", nIn, 1)
		n.Domain = FusedDomain
		return n
	}
	for _, tc := range []struct {
		name string
		n    *ir.Node
		in   []*tensor.Tensor
	}{
		{"mha rank 2", mha(1), []*tensor.Tensor{f(4, 12)}},
		{"mha width not 3 x heads", mha(1), []*tensor.Tensor{f(1, 4, 10)}},
		{"mha width zero", mha(1), []*tensor.Tensor{f(1, 4, 0)}},
		{"mha mask does not broadcast", mha(2), []*tensor.Tensor{f(1, 4, 12), f(1, 1, 1, 5)}},
		{"mha mask enlarges", mha(2), []*tensor.Tensor{f(1, 4, 12), f(3, 1, 1, 4)}},
		{"mha float64", mha(1), []*tensor.Tensor{tensor.New(tensor.Float64, 1, 4, 12)}},
		{"mha no heads", mhaNode(0)(1), []*tensor.Tensor{f(1, 4, 12)}},
		{"skipln scalar", sln(3), []*tensor.Tensor{f(), nil, f(1)}},
		{"skipln no gamma", sln(2), []*tensor.Tensor{f(2, 4), f(2, 4)}},
		{"skipln gamma length", sln(3), []*tensor.Tensor{f(2, 4), f(2, 4), f(3)}},
		{"skipln beta length", sln(4), []*tensor.Tensor{f(2, 4), f(2, 4), f(4), f(5)}},
		{"skipln skip shape", sln(3), []*tensor.Tensor{f(2, 4), f(1, 4), f(4)}},
		{"skipln float64", sln(3), []*tensor.Tensor{tensor.New(tensor.Float64, 2, 4), nil, f(4)}},
		{"skipln negative epsilon", func() *ir.Node { n := sln(3); n.Attrs["epsilon"] = ir.FloatAttr("epsilon", -1); return n }(), []*tensor.Tensor{f(2, 4), nil, f(4)}},
	} {
		wantBadInput(t, tc.name, tc.n, 1, tc.in...)
	}
}

// unfusedAttention computes MatMul(Softmax(MatMul(q, kt)*scale + mask), v)
// with the ONNX ops one by one (the graph the attention pass replaces).
func unfusedAttention(t *testing.T, q, kt, v, mask *tensor.Tensor, scale float32) *tensor.Tensor {
	t.Helper()
	step := func(op string, attrs []*ir.Attr, in ...*tensor.Tensor) *tensor.Tensor {
		out, err := execSafe(opstest.Node(op, len(in), 1, attrs...), 13, in...)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		return out[0]
	}
	s := step("MatMul", nil, q, kt)
	s = step("Mul", nil, s, tensor.Scalar(tensor.Float32, float64(scale)))
	if mask != nil {
		s = step("Add", nil, s, mask)
	}
	s = step("Softmax", []*ir.Attr{ir.IntAttr("axis", -1)}, s)
	return step("MatMul", nil, s, v)
}

// TestAttentionBlocks checks kiln::Attention (the reference kernel; the
// CPU registry's blocked path is checked against it in device/cpu/kernels)
// against the unfused ONNX ops at sequence lengths 1,
// 7 and 128, queries and keys of different lengths, value widths other
// than the head size, and masks over keys, rows, heads or all four axes.
func TestAttentionBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct {
		b, h, s, tk, d, e int
		mask              []int
	}{
		{1, 1, 1, 1, 8, 8, nil},
		{2, 3, 7, 7, 5, 4, []int{2, 1, 1, 7}},
		{1, 2, 7, 30, 8, 16, []int{1, 2, 7, 30}},
		{1, 4, 128, 128, 32, 32, []int{1, 1, 1, 128}},
		{2, 2, 128, 64, 16, 8, []int{128, 64}},
		{1, 3, 40, 128, 64, 64, nil},
	} {
		name := fmt.Sprintf("b%d h%d s%d t%d d%d e%d mask %v", tc.b, tc.h, tc.s, tc.tk, tc.d, tc.e, tc.mask)
		q := randTensor(r, tensor.Float32, tc.b, tc.h, tc.s, tc.d)
		kt := randTensor(r, tensor.Float32, tc.b, tc.h, tc.d, tc.tk)
		v := randTensor(r, tensor.Float32, tc.b, tc.h, tc.tk, tc.e)
		in := []*tensor.Tensor{q, kt, v}
		var mask *tensor.Tensor
		if tc.mask != nil {
			mask = randTensor(r, tensor.Float32, tc.mask...)
			for i := range mask.Float32s() {
				if i%3 == 2 {
					mask.Float32s()[i] = -10000
				}
			}
			in = append(in, mask)
		}
		n := opstest.Node("Attention", len(in), 1, ir.FloatAttr("scale", 0.3))
		n.Domain = FusedDomain
		got, err := execSafe(n, 13, in...)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		want := unfusedAttention(t, q, kt, v, mask, 0.3)
		closeTo(t, name, got[0], want.Shape, floats(want), 1e-5)
	}
}
