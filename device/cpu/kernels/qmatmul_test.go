package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// qmmNode is a kiln::QMatMul node typed as in.
func qmmNode(in []*tensor.Tensor, aScale float32, act string, params []float32) *ir.Node {
	n := mmNode("FusedMatMul", in, nil, act, params)
	n.OpType = "QMatMul"
	n.Attrs["a_scale"] = ir.FloatAttr("a_scale", aScale)
	return n
}

// qmmRef is QMatMul in float64 from the formula: A quantized as
// clamp(RoundToEven(a/a_scale), -127, 127), the sums exact, the epilogue
// from the float32 combined scales.
func qmmRef(a, b, bs, bias, z *tensor.Tensor, as float32, act string, params []float32) []float64 {
	k, n := b.Shape[0], b.Shape[1]
	rows := tensor.NumElements(a.Shape[:a.Rank()-1])
	want := make([]float64, rows*n)
	for i := 0; i < rows; i++ {
		for j := 0; j < n; j++ {
			var acc float64
			for p := 0; p < k; p++ {
				q := math.Max(-127, math.Min(127, math.RoundToEven(float64(a.Float32s()[i*k+p]/as))))
				acc += q * float64(b.Int8s()[p*n+j])
			}
			v := acc * float64(as*bs.Float32s()[j])
			if bias != nil {
				v += float64(bias.Float32s()[j])
			}
			if z != nil {
				v += float64(z.Float32s()[i*n+j])
			}
			y := []float32{float32(v)}
			ops.EpilogueAttrs{Activation: act, P0: pOf(params, 0), P1: pOf(params, 1)}.ApplySerial(y)
			want[i*n+j] = float64(y[0])
		}
	}
	return want
}

func pOf(p []float32, i int) float32 {
	if i < len(p) {
		return p[i]
	}
	return 0
}

func qmmScaled(r *rand.Rand, s float64, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	for i := range t.Float32s() {
		t.Float32s()[i] = float32((r.Float64()*2 - 1) * s)
	}
	return t
}

func qmmInt8(r *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Int8, shape...)
	for i := range t.Int8s() {
		t.Int8s()[i] = int8(r.IntN(256) - 128)
	}
	return t
}

// TestQMatMulRegistry: the registry's kiln::QMatMul runs float32 nodes
// and, on every int8 kernel of this CPU, matches the formula (float64,
// within float32 rounding of the epilogue) and the op's reference kernel
// (plain int32 loops), into garbage outputs, run twice (the second reads
// the packed weights): K not a multiple of 4, one row, a vector A, batches,
// K = 0 (the bias), with and without bias and residual, activations the
// int8 epilogue clamps (Relu, Clip) and one after it (SiLU).
func TestQMatMulRegistry(t *testing.T) {
	names := cpu.Int8KernelNames()
	defer cpu.SetInt8Kernel(names[0])
	acts := []struct {
		act    string
		params []float32
	}{{"", nil}, {"Relu", nil}, {"Clip", []float32{-0.5, 0.5}}, {"SiLU", nil}}
	for _, kern := range names {
		if err := cpu.SetInt8Kernel(kern); err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 4))
		for _, s := range []struct{ a, b []int }{
			{[]int{3, 5}, []int{5, 4}}, {[]int{2, 3, 17}, []int{17, 70}}, {[]int{9}, []int{9, 3}},
			{[]int{2, 2, 33, 64}, []int{64, 19}}, {[]int{1, 1}, []int{1, 1}}, {[]int{128, 96}, []int{96, 130}},
			{[]int{2, 0}, []int{0, 3}},
		} {
			for ai, a := range acts {
				const as = float32(1.0 / 127)
				x, w, bs := qmmScaled(r, 1, s.a...), qmmInt8(r, s.b...), qmmScaled(r, 1e-2, s.b[1])
				outShape := append(append([]int{}, s.a[:len(s.a)-1]...), s.b[1])
				in := []*tensor.Tensor{x, w, bs}
				var bias, z *tensor.Tensor
				if ai%2 == 1 {
					bias, z = qmmScaled(r, 1, s.b[1]), qmmScaled(r, 1, outShape...)
					in = append(in, bias, z)
				}
				name := fmt.Sprintf("%s %v x %v %q", kern, s.a, s.b, a.act)
				n := qmmNode(in, as, a.act, a.params)
				k, impl, err := Prepare(n, 17)
				if err != nil || impl != "cpu.QMatMul" {
					t.Fatalf("%s: Prepare = %q, %v", name, impl, err)
				}
				ref, err := ops.Prepare(n, 17)
				if err != nil {
					t.Fatal(err)
				}
				rw, err := ref.Run(garbageEnv(), in)
				if err != nil {
					t.Fatalf("%s reference: %v", name, err)
				}
				want := qmmRef(x, w, bs, bias, z, as, a.act, a.params)
				for run := range 2 {
					got, err := k.Run(garbageEnv(), in)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if fmt.Sprint(got[0].Shape) != fmt.Sprint(outShape) {
						t.Fatalf("%s: shape %v, want %v", name, got[0].Shape, outShape)
					}
					for i, wv := range want {
						g, rv := float64(got[0].Float32s()[i]), float64(rw[0].Float32s()[i])
						mag := math.Abs(wv) + 1
						if z != nil {
							mag += math.Abs(float64(z.Float32s()[i]))
						}
						if math.Abs(g-wv) > 1e-5*mag || math.Abs(g-rv) > 1e-5*mag {
							t.Fatalf("%s run %d: y[%d] = %g, formula %g, reference %g", name, run, i, g, wv, rv)
						}
					}
				}
			}
		}
	}
}

// TestQMatMulRegistryBadInput: inputs the fast path does not take get the
// reference's errors (ops.ErrBadInput), never a panic.
func TestQMatMulRegistryBadInput(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	a, b, bs := qmmScaled(r, 1, 2, 6), qmmInt8(r, 6, 4), qmmScaled(r, 1e-2, 4)
	nan := qmmScaled(r, 1e-2, 4)
	nan.Float32s()[2] = float32(math.NaN())
	for _, tc := range []struct {
		name string
		in   []*tensor.Tensor
	}{
		{"inner dims", []*tensor.Tensor{a, qmmInt8(r, 5, 4), bs}},
		{"batched weights", []*tensor.Tensor{a, qmmInt8(r, 2, 6, 4), bs}},
		{"float weights", []*tensor.Tensor{a, qmmScaled(r, 1, 6, 4), bs}},
		{"scales", []*tensor.Tensor{a, b, qmmScaled(r, 1, 5)}},
		{"NaN scale", []*tensor.Tensor{a, b, nan}},
		{"bias", []*tensor.Tensor{a, b, bs, qmmScaled(r, 1, 3)}},
		{"residual", []*tensor.Tensor{a, b, bs, nil, qmmScaled(r, 1, 2, 5)}},
		{"scalar", []*tensor.Tensor{tensor.Scalar(tensor.Float32, 1), b, bs}},
		{"two inputs", []*tensor.Tensor{a, b}},
	} {
		k, impl, err := Prepare(qmmNode([]*tensor.Tensor{a, b, bs}, 0.01, "", nil), 17)
		if err != nil || impl != "cpu.QMatMul" {
			t.Fatalf("Prepare = %q, %v", impl, err)
		}
		if _, err := k.Run(garbageEnv(), tc.in); !errors.Is(err, ops.ErrBadInput) {
			t.Errorf("%s: err = %v, want ErrBadInput", tc.name, err)
		}
	}
}

// TestQMatMulRegistryConcurrent runs one kernel from several goroutines at
// once (contexts share kernels): the weights are packed once, under a
// lock, and every run gets the same output (run it with -race).
func TestQMatMulRegistryConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	in := []*tensor.Tensor{qmmScaled(r, 1, 64, 96), qmmInt8(r, 96, 80), qmmScaled(r, 1e-2, 80), qmmScaled(r, 1, 80)}
	n := qmmNode(in, 1.0/127, "Relu", nil)
	k, _, err := Prepare(n, 17)
	if err != nil {
		t.Fatal(err)
	}
	want := qmmRef(in[0], in[1], in[2], in[3], nil, 1.0/127, "Relu", nil)
	outs := make([]*tensor.Tensor, 6)
	errs := make([]error, 6)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := k.Run(nil, in)
			if err == nil {
				outs[i] = o[0]
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for j, w := range want {
			if g := float64(outs[i].Float32s()[j]); math.Abs(g-w) > 1e-5*(math.Abs(w)+1) {
				t.Fatalf("run %d: y[%d] = %g, want %g", i, j, g, w)
			}
		}
	}
}

// BenchmarkQMatMul compares the registry's kiln::QMatMul with its
// kiln::FusedMatMul on a BERT-like projection (128 x 768 x 768, bias, no
// activation), B a constant in both; GOPS counts 2 operations per
// multiply-add.
func BenchmarkQMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	const rows, k, n = 128, 768, 768
	x := qmmScaled(r, 1, 1, rows, k)
	w := qmmScaled(r, 0.1, k, n)
	bias := qmmScaled(r, 0.1, n)
	wq := qmmInt8(r, k, n)
	ws := qmmScaled(r, 1e-3, n)
	run := func(b *testing.B, nd *ir.Node, in ...*tensor.Tensor) {
		kern, _, err := Prepare(nd, 17)
		if err != nil {
			b.Fatal(err)
		}
		out := tensor.New(tensor.Float32, 1, rows, n)
		env := &ops.Env{Alloc: func(tensor.DType, []int) (*tensor.Tensor, error) { return out, nil }}
		start := time.Now()
		for b.Loop() {
			if _, err := kern.Run(env, in); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(2*rows*k*n*float64(b.N)/time.Since(start).Seconds()/1e9, "GOPS")
	}
	b.Run("bert_128x768x768/float32", func(b *testing.B) {
		run(b, mmNode("FusedMatMul", []*tensor.Tensor{x, w, bias}, map[int]bool{1: true}, "", nil), x, w, bias)
	})
	b.Run("bert_128x768x768/int8", func(b *testing.B) {
		in := []*tensor.Tensor{x, wq, ws, bias}
		run(b, qmmNode(in, 1.0/127, "", nil), in...)
	})
}
