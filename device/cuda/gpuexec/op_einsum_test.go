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
		eq string
		in []*tensor.Tensor
	}{
		{"bij,bjk->bik", []*tensor.Tensor{rnd(2, 3, 4), rnd(2, 4, 5)}},
		{"ij,jk", []*tensor.Tensor{rnd(3, 4), rnd(4, 2)}},
		{"ij->ji", []*tensor.Tensor{rnd(3, 5)}},
		{"ij->", []*tensor.Tensor{rnd(3, 5)}},
		{"ii->i", []*tensor.Tensor{rnd(4, 4)}},
		{"ii", []*tensor.Tensor{rnd(4, 4)}},
		{"...ij,...jk->...ik", []*tensor.Tensor{rnd(2, 1, 3, 4), rnd(5, 4, 2)}},
		{"b...,b->...", []*tensor.Tensor{rnd(3, 2, 2), rnd(3)}},
		{"i,j->ij", []*tensor.Tensor{rnd(3), rnd(4)}},
		{"nchw,w->nchw", []*tensor.Tensor{rnd(1, 2, 3, 4), rnd(4)}},
		{"ab,bc,cd->ad", []*tensor.Tensor{rnd(2, 3), rnd(3, 4), rnd(4, 2)}},
		{"Ab,bA", []*tensor.Tensor{rnd(2, 3), rnd(3, 2)}},
		{"ba,ab->", []*tensor.Tensor{rnd(2, 3), rnd(3, 2)}},
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
