package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// gemmWant is Y = alpha*op(A)*op(B) + beta*C in float64 from the inputs'
// values (C broadcast to [m, n]; nil when absent).
func gemmWant(a, b, c *tensor.Tensor, transA, transB bool, alpha, beta float64) []float64 {
	m, k := a.Shape[0], a.Shape[1]
	if transA {
		m, k = k, m
	}
	n := b.Shape[1]
	if transB {
		n = b.Shape[0]
	}
	at := func(i, p int) float64 {
		if transA {
			return a.Float(p*m + i)
		}
		return a.Float(i*k + p)
	}
	bt := func(p, j int) float64 {
		if transB {
			return b.Float(j*k + p)
		}
		return b.Float(p*n + j)
	}
	y := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				s += at(i, p) * bt(p, j)
			}
			y[i*n+j] = alpha * s
			if c != nil && beta != 0 {
				cr, cc := 1, 1
				switch c.Rank() {
				case 1:
					cc = c.Shape[0]
				case 2:
					cr, cc = c.Shape[0], c.Shape[1]
				}
				y[i*n+j] += beta * c.Float((i%cr)*cc+j%cc)
			}
		}
	}
	return y
}

// TestGemmRegistry: cpu.Gemm (cpu.Sgemm) against ops/nn's Gemm (plain
// loops) and against the formula in float64, every transA/transB, alpha
// and beta (0 too), C absent, scalar, a row, a column, a full matrix, sizes
// from empty (M = 0, K = 0) to ones that take Sgemm's packed path, in
// float32, float16 (the float16 adapter) and bfloat16, into garbage-filled
// outputs, each run twice; float64 and int32 stay with the reference.
func TestGemmRegistry(t *testing.T) {
	r := rand.New(rand.NewPCG(71, 72))
	tols := map[tensor.DType]float64{tensor.Float32: 1e-4, tensor.Float16: 1e-3, tensor.BFloat16: 8e-3}
	sizes := [][3]int{{1, 1, 1}, {3, 5, 7}, {4, 16, 33}, {37, 70, 129}, {130, 67, 300}, {0, 4, 3}, {3, 4, 0}, {2, 0, 3}}
	cshapes := []func(m, n int) []int{
		nil,
		func(m, n int) []int { return []int{} },
		func(m, n int) []int { return []int{1} },
		func(m, n int) []int { return []int{n} },
		func(m, n int) []int { return []int{m, 1} },
		func(m, n int) []int { return []int{1, n} },
		func(m, n int) []int { return []int{m, n} },
	}
	for _, dt := range []tensor.DType{tensor.Float32, tensor.Float16, tensor.BFloat16} {
		for _, sz := range sizes {
			for ci, cs := range cshapes {
				for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
					m, n, k := sz[0], sz[1], sz[2]
					alpha, beta := float32(r.Float64()*2-1), float32(r.Float64()*2-1)
					if ci == 6 && tr[0] {
						beta = 0 // C given, not read
					}
					if ci == 3 && tr[1] {
						alpha = 1
					}
					name := fmt.Sprintf("%v %dx%dx%d c%d trans%v alpha%.2f beta%.2f", dt, m, n, k, ci, tr, alpha, beta)
					as, bs := []int{m, k}, []int{k, n}
					if tr[0] {
						as = []int{k, m}
					}
					if tr[1] {
						bs = []int{n, k}
					}
					in := []*tensor.Tensor{randTensor(r, dt, as...), randTensor(r, dt, bs...)}
					if cs != nil {
						in = append(in, randTensor(r, dt, cs(m, n)...))
					}
					node := opstest.Node("Gemm", len(in), 1, opstest.Float("alpha", alpha), opstest.Float("beta", beta),
						opstest.Int("transA", b2i(tr[0])), opstest.Int("transB", b2i(tr[1])))
					fast, ref := registryAndRef(t, "cpu.Gemm", node, in, nil)
					want, err := ref.Run(garbageEnv(), in)
					if err != nil {
						t.Fatalf("%s: reference: %v", name, err)
					}
					var c *tensor.Tensor
					if len(in) > 2 {
						c = in[2]
					}
					f64 := gemmWant(in[0], in[1], c, tr[0], tr[1], float64(alpha), float64(beta))
					for run := range 2 {
						got, err := fast.Run(garbageEnv(), in)
						if err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						closeTo(t, fmt.Sprintf("%s run %d", name, run), got[0], want[0], tols[dt])
						for i, w := range f64 {
							g := got[0].Float(i)
							// the formula in float64: the inputs' sums of
							// up to 300 products, rounded to dt once
							if math.IsNaN(g) || math.Abs(g-w) > tols[dt]*(1+math.Abs(w)) {
								t.Fatalf("%s run %d: y[%d] = %g, formula %g", name, run, i, g, w)
							}
						}
					}
				}
			}
		}
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// TestGemmRegistryTypesAndBadInput: float64 and int32 Gemm run the
// reference; inputs cpu.Gemm does not take get the reference's errors.
func TestGemmRegistryTypesAndBadInput(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.Float64, tensor.Int32} {
		n := opstest.Node("Gemm", 2, 1)
		n.Inputs[0].Type = ir.Type{DType: dt, Shape: ir.Shape{ir.D(2), ir.D(3)}}
		n.Inputs[1].Type = ir.Type{DType: dt, Shape: ir.Shape{ir.D(3), ir.D(2)}}
		if _, name, err := Default().Prepare(n, 13); err != nil || name != Reference {
			t.Errorf("%v Gemm: kernel %q (%v), want %q", dt, name, err, Reference)
		}
	}
	f := func(shape ...int) *tensor.Tensor { return tensor.New(tensor.Float32, shape...) }
	for _, tc := range []struct {
		name string
		in   []*tensor.Tensor
	}{
		{"inner dims differ", []*tensor.Tensor{f(2, 3), f(4, 2)}},
		{"A not a matrix", []*tensor.Tensor{f(2, 3, 1), f(3, 2)}},
		{"C does not broadcast", []*tensor.Tensor{f(2, 3), f(3, 2), f(3)}},
		{"C of rank 3", []*tensor.Tensor{f(2, 3), f(3, 2), f(1, 2, 2)}},
		{"types differ", []*tensor.Tensor{f(2, 3), tensor.New(tensor.Float64, 3, 2)}},
		{"one input", []*tensor.Tensor{f(2, 3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := opstest.Node("Gemm", 3, 1)
			n.Inputs[0].Type = ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.U(), ir.U()}}
			n.Inputs[1].Type = ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.U(), ir.U()}}
			n.Inputs[2].Type = ir.Type{DType: tensor.Float32}
			fast, name, err := Default().Prepare(n, 13)
			if err != nil || name != "cpu.Gemm" {
				t.Fatalf("kernel %q (%v), want cpu.Gemm", name, err)
			}
			ref, err := ops.Prepare(n, 13)
			if err != nil {
				t.Fatal(err)
			}
			_, werr := ref.Run(garbageEnv(), tc.in)
			_, gerr := fast.Run(garbageEnv(), tc.in)
			if werr == nil || gerr == nil || gerr.Error() != werr.Error() || !errors.Is(gerr, ops.ErrBadInput) {
				t.Fatalf("error %v, reference's %v (want the same, an ops.ErrBadInput)", gerr, werr)
			}
		})
	}
}
