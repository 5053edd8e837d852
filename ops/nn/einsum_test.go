package nn

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refEinsum is the oracle: eq is an explicit equation of single letters
// (no ellipsis); it loops over every assignment of every label. Dims of
// size 1 broadcast.
func refEinsum(eq string, ins []*tensor.Tensor) ([]float64, []int) {
	lhs, rhs, _ := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	size := map[byte]int{}
	var labels []byte
	for i, term := range terms {
		for j := 0; j < len(term); j++ {
			l := term[j]
			if _, ok := size[l]; !ok {
				labels = append(labels, l)
				size[l] = 1
			}
			size[l] = max(size[l], ins[i].Shape[j])
		}
	}
	outShape := make([]int, len(rhs))
	for i := range rhs {
		outShape[i] = size[rhs[i]]
	}
	out := make([]float64, tensor.NumElements(outShape))
	vals := make([]float64, len(ins))
	assign := map[byte]int{}
	var rec func(d int)
	rec = func(d int) {
		if d == len(labels) {
			prod := 1.0
			for i, term := range terms {
				off := 0
				for j := 0; j < len(term); j++ {
					v := assign[term[j]]
					if ins[i].Shape[j] == 1 {
						v = 0
					}
					off = off*ins[i].Shape[j] + v
				}
				vals[i] = ins[i].Float(off)
				prod *= vals[i]
			}
			o := 0
			for i := range rhs {
				o = o*outShape[i] + assign[rhs[i]]
			}
			out[o] += prod
			return
		}
		for v := 0; v < size[labels[d]]; v++ {
			assign[labels[d]] = v
			rec(d + 1)
		}
	}
	rec(0)
	return out, outShape
}

func TestEinsumAgainstReference(t *testing.T) {
	cases := []struct {
		eq, ref string
		shapes  [][]int
	}{
		{"ij->ji", "ij->ji", [][]int{{3, 4}}},
		{"ij->i", "ij->i", [][]int{{3, 4}}},
		{"ij", "ij->ij", [][]int{{3, 4}}},
		{"ji", "ji->ij", [][]int{{3, 4}}},
		{"i,i", "i,i->", [][]int{{5}, {5}}},
		{"ii->i", "ii->i", [][]int{{4, 4}}},
		{"ii", "ii->", [][]int{{4, 4}}},
		{"...ii ->...i", "aii->ai", [][]int{{3, 5, 5}}},
		{"bij, bjk -> bik", "bij,bjk->bik", [][]int{{5, 2, 3}, {5, 3, 4}}},
		{"ij,jk", "ij,jk->ik", [][]int{{3, 4}, {4, 5}}},
		{"ij,kj->ik", "ij,kj->ik", [][]int{{3, 4}, {5, 4}}},
		{"i,j->ij", "i,j->ij", [][]int{{3}, {4}}},
		{"...ij,...jk->...ik", "aij,ajk->aik", [][]int{{2, 3, 4}, {1, 4, 5}}},
		{"...ij,jk", "abij,jk->abik", [][]int{{2, 2, 3, 4}, {4, 5}}},
		{"bhqd,bhkd->bhqk", "bhqd,bhkd->bhqk", [][]int{{2, 3, 4, 5}, {2, 3, 6, 5}}},
		{"ijk,jil->kl", "ijk,jil->kl", [][]int{{2, 3, 4}, {3, 2, 5}}},
		{"ij,jk,kl->il", "ij,jk,kl->il", [][]int{{2, 3}, {3, 4}, {4, 5}}},
		{"abc,cd,a->bd", "abc,cd,a->bd", [][]int{{2, 3, 4}, {4, 2}, {2}}},
		{"iij,jk->ik", "iij,jk->ik", [][]int{{3, 3, 2}, {2, 4}}},
		{"Ab,bA", "Ab,bA->", [][]int{{2, 3}, {3, 2}}},
		{"ba,ab", "ba,ab->", [][]int{{2, 3}, {3, 2}}},
		{"ij...,jk...->ik...", "ijz,jkz->ikz", [][]int{{2, 3, 4}, {3, 5, 4}}},
		{"i,i,i->", "i,i,i->", [][]int{{4}, {4}, {4}}},
		{"ij->", "ij->", [][]int{{3, 4}}},
	}
	r := rand.New(rand.NewPCG(81, 82))
	for _, c := range cases {
		for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Int64, tensor.Int32, tensor.Float16, tensor.Uint8} {
			ins := make([]*tensor.Tensor, len(c.shapes))
			for i, s := range c.shapes {
				ins[i] = randTensor(r, dt, s...)
			}
			n := opstest.Node("Einsum", len(ins), 1, opstest.String("equation", c.eq))
			outs, err := execSafe(n, 12, ins...)
			if err != nil {
				t.Errorf("%q %v: %v", c.eq, dt, err)
				continue
			}
			want, shape := refEinsum(c.ref, ins)
			tol := 1e-5
			if dt == tensor.Float16 {
				tol = 2e-2
			}
			if dt == tensor.Uint8 {
				for i := range want {
					want[i] = float64(uint8(int64(want[i])))
				}
			}
			closeTo(t, c.eq+" "+dt.String(), outs[0], shape, want, tol)
		}
	}
}

func TestEinsumInferAndErrors(t *testing.T) {
	n := opstest.Node("Einsum", 2, 1, opstest.String("equation", "bhqd,bhkd->bhqk"))
	got := inferTypes(t, n, 12,
		ty(tensor.Float32, ir.S("b"), ir.D(12), ir.S("s"), ir.D(64)),
		ty(tensor.Float32, ir.S("b"), ir.D(12), ir.S("s"), ir.D(64)))
	if s := got[0].Shape.String(); s != "[b,12,s,s]" {
		t.Errorf("Einsum shape %s", s)
	}
	got = inferTypes(t, opstest.Node("Einsum", 2, 1, opstest.String("equation", "...ij,...jk")), 12,
		ty(tensor.Float32, ir.S("b"), ir.D(3), ir.D(4)),
		ty(tensor.Float32, ir.D(4), ir.D(5)))
	if s := got[0].Shape.String(); s != "[b,3,5]" {
		t.Errorf("Einsum shape %s", s)
	}
	x := tensor.New(tensor.Float32, 3, 4)
	wantBadInput(t, "rank", opstest.Node("Einsum", 1, 1, opstest.String("equation", "ijk->i")), 12, x)
	wantBadInput(t, "size", opstest.Node("Einsum", 2, 1, opstest.String("equation", "ij,ij->i")), 12, x, tensor.New(tensor.Float32, 3, 5))
	wantBadInput(t, "terms", opstest.Node("Einsum", 1, 1, opstest.String("equation", "ij,jk->ik")), 12, x)
	wantBadInput(t, "output label", opstest.Node("Einsum", 1, 1, opstest.String("equation", "ij->k")), 12, x)
	wantBadInput(t, "syntax", opstest.Node("Einsum", 1, 1, opstest.String("equation", "i.j->i")), 12, x)
	wantBadInput(t, "repeated output", opstest.Node("Einsum", 1, 1, opstest.String("equation", "ij->ii")), 12, x)
	wantBadInput(t, "dtype", opstest.Node("Einsum", 2, 1, opstest.String("equation", "ij,ij->i")), 12, x, tensor.New(tensor.Float64, 3, 4))
}
