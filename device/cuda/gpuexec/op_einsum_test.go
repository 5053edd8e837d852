package gpuexec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// einsumOnHost computes what kernels/op_einsum.cu computes from the meta
// array einsumMeta lays out, on the host.
func einsumOnHost(meta []int64, total, K int64, in []*tensor.Tensor) []float64 {
	nO, nK, nops := int(meta[0]), int(meta[1]), int(meta[2])
	nl := nO + nK
	ext, st := meta[3:3+nl], meta[3+nl:]
	offsets := func(i int64, from, n int, off []int64) {
		for d := from + n - 1; d >= from; d-- {
			c := i % ext[d]
			i /= ext[d]
			for k := range nops {
				off[k] += c * st[k*nl+d]
			}
		}
	}
	y := make([]float64, total)
	for i := range total {
		base := make([]int64, 3)
		offsets(i, 0, nO, base)
		for j := range K {
			off := append([]int64(nil), base...)
			offsets(j, nO, nK, off)
			p := 1.0
			for k := range nops {
				p *= in[k].Float(int(off[k]))
			}
			y[i] += p
		}
	}
	return y
}

// TestEinsumMeta checks the labels, extents and strides the Einsum kernel
// reads (einsumMeta) for the equation forms it runs: computed on the host
// as the kernel would, every output matches the CPU engine's Einsum.
func TestEinsumMeta(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	rnd := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64())
		}
		return x
	}
	tests := []struct {
		eq   string
		in   []*tensor.Tensor
		gemm bool // a strided batched product (asGEMM)
	}{
		{"bij,bjk->bik", []*tensor.Tensor{rnd(2, 3, 4), rnd(2, 4, 5)}, true},
		{"ij,jk", []*tensor.Tensor{rnd(3, 4), rnd(4, 2)}, true},
		{"ij->ji", []*tensor.Tensor{rnd(3, 5)}, false},
		{"ij->", []*tensor.Tensor{rnd(3, 5)}, false},
		{"ii->i", []*tensor.Tensor{rnd(4, 4)}, false},
		{"ii", []*tensor.Tensor{rnd(4, 4)}, false},
		{"...ij,...jk->...ik", []*tensor.Tensor{rnd(2, 1, 3, 4), rnd(5, 4, 2)}, false},
		{"...ij,...jk->...ik", []*tensor.Tensor{rnd(2, 5, 3, 4), rnd(2, 5, 4, 2)}, true},
		{"b...,b->...", []*tensor.Tensor{rnd(3, 2, 2), rnd(3)}, true},
		{"i,j->ij", []*tensor.Tensor{rnd(3), rnd(4)}, true},
		{"nchw,w->nchw", []*tensor.Tensor{rnd(1, 2, 3, 4), rnd(4)}, false},
		{"ab,bc,cd->ad", []*tensor.Tensor{rnd(2, 3), rnd(3, 4), rnd(4, 2)}, false},
		{"Ab,bA", []*tensor.Tensor{rnd(2, 3), rnd(3, 2)}, false},
		{"ba,ab->", []*tensor.Tensor{rnd(2, 3), rnd(3, 2)}, false}, // K's labels in two orders
		{"ab,ab->", []*tensor.Tensor{rnd(2, 3), rnd(2, 3)}, true},
		{"bhid,bhjd->bhij", []*tensor.Tensor{rnd(2, 3, 5, 4), rnd(2, 3, 6, 4)}, true},
		{"bhij,bhjd->bhid", []*tensor.Tensor{rnd(2, 3, 5, 6), rnd(2, 3, 6, 4)}, true},
		{"bij,bjk->bki", []*tensor.Tensor{rnd(2, 3, 4), rnd(2, 4, 5)}, true},
		{"ij,kj->ik", []*tensor.Tensor{rnd(3, 4), rnd(5, 4)}, true},
		{"bid,bjd->bij", []*tensor.Tensor{rnd(1, 3, 4), rnd(1, 5, 4)}, true},
		{"ibd,jbd->bij", []*tensor.Tensor{rnd(3, 2, 4), rnd(5, 2, 4)}, true},
		{"abc,cd->abd", []*tensor.Tensor{rnd(2, 3, 4), rnd(4, 5)}, true},
		{"ij,j->i", []*tensor.Tensor{rnd(3, 4), rnd(4)}, true},
		{"ij,i->j", []*tensor.Tensor{rnd(3, 4), rnd(3)}, true},
		{"ij,ij->i", []*tensor.Tensor{rnd(3, 4), rnd(3, 4)}, true},
		{"ij,jk->", []*tensor.Tensor{rnd(3, 4), rnd(4, 2)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.eq, func(t *testing.T) {
			b := ir.NewBuilder("einsum", 17)
			feeds := map[string]*tensor.Tensor{}
			var xs []*ir.Value
			for i, x := range tt.in {
				var dims []ir.Dim
				for _, d := range x.Shape {
					dims = append(dims, ir.D(int64(d)))
				}
				name := fmt.Sprintf("x%d", i)
				xs = append(xs, b.Input(name, tensor.Float32, dims...))
				feeds[name] = x
			}
			b.Output(b.Op("Einsum", xs, ir.StringAttr("equation", tt.eq)), "y")
			g := b.Graph()
			if _, err := ops.InferGraph(g); err != nil {
				t.Fatal(err)
			}
			n := g.Nodes[0]
			if err := Supports(n, g); err != nil {
				t.Fatalf("Supports: %v", err)
			}
			e, err := parseEinsum(n)
			if err != nil {
				t.Fatal(err)
			}
			var dims [][]int
			for _, x := range tt.in {
				dims = append(dims, x.Shape)
			}
			yd, _ := n.Outputs[0].Type.Shape.Ints()
			meta, total, K, err := einsumMeta(e, dims, yd)
			if err != nil {
				t.Fatal(err)
			}
			ce, err := engine.New(g)
			if err != nil {
				t.Fatal(err)
			}
			out, err := ce.Run(context.Background(), feeds)
			if err != nil {
				t.Fatal(err)
			}
			want := out["y"]
			got := einsumOnHost(meta, total, K, tt.in)
			if int64(want.Len()) != total {
				t.Fatalf("%d outputs, want %d", total, want.Len())
			}
			for i, g := range got {
				if w := want.Float(i); math.Abs(g-w) > 1e-4+1e-4*math.Abs(w) {
					t.Errorf("y[%d] = %g, want %g", i, g, w)
				}
			}
			p, err := e.bind(dims, yd)
			if err != nil {
				t.Fatal(err)
			}
			gm, ok := p.asGEMM()
			if ok != tt.gemm {
				t.Fatalf("asGEMM: %v, want %v", ok, tt.gemm)
			}
			if !ok {
				return
			}
			// gemm_t's sums: Y[b, row, col] = sum_k A[b, row, k] B[b, k, col]
			a, bb := tt.in[0], tt.in[1]
			if gm.swap {
				a, bb = bb, a
			}
			for b := range gm.batch {
				for row := range gm.m {
					for col := range gm.n {
						acc := 0.0
						for k := range gm.k {
							acc += a.Float(int(int64(b)*gm.sAb+int64(row)*gm.sAm+int64(k)*gm.sAk)) *
								bb.Float(int(int64(b)*gm.sBb+int64(k)*gm.sBk+int64(col)*gm.sBn))
						}
						i := (b*gm.m+row)*gm.n + col
						if w := want.Float(i); math.Abs(acc-w) > 1e-4+1e-4*math.Abs(w) {
							t.Errorf("as a product: y[%d] = %g, want %g", i, acc, w)
						}
					}
				}
			}
		})
	}
}

// TestEinsumRefuses checks what Einsum leaves to the CPU, and why.
func TestEinsumRefuses(t *testing.T) {
	tests := []struct {
		eq    string
		ranks int
		dt    tensor.DType
		want  string
	}{
		{"a,a,a,a->a", 4, tensor.Float32, "Einsum of 4 operands"},
		{"a->a", 1, tensor.Uint8, "CUDA kernels take"},
	}
	for _, tt := range tests {
		b := ir.NewBuilder("einsum", 17)
		var xs []*ir.Value
		for i := range tt.ranks {
			xs = append(xs, b.Input(fmt.Sprintf("x%d", i), tt.dt, ir.D(3)))
		}
		b.Output(b.Op("Einsum", xs, ir.StringAttr("equation", tt.eq)), "y")
		g := b.Graph()
		if _, err := ops.InferGraph(g); err != nil {
			t.Fatal(err)
		}
		if err := Supports(g.Nodes[0], g); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s of %v: %v, want an error saying %q", tt.eq, tt.dt, err, tt.want)
		}
	}
}
