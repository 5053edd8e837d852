package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// addBN appends a BatchNormalization of c channels with random statistics.
func addBN(b *ir.Builder, r *rand.Rand, x *ir.Value, c int) *ir.Value {
	return b.Op("BatchNormalization", []*ir.Value{x,
		b.Const("", positive(r, c)), b.Const("", f32(r, c)), b.Const("", f32(r, c)), b.Const("", positive(r, c))},
		ir.FloatAttr("epsilon", 1e-3))
}

func TestBNFold(t *testing.T) {
	conv := func(bias bool, shared bool) func() *ir.Graph {
		return func() *ir.Graph {
			r := rand.New(rand.NewPCG(3, 3))
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(1), ir.D(3), ir.D(6), ir.D(6))
			w := b.Const("w", f32(r, 4, 3, 3, 3))
			in := []*ir.Value{x, w}
			if bias {
				in = append(in, b.Const("b", f32(r, 4)))
			}
			y := addBN(b, r, b.Op("Conv", in, ir.IntsAttr("pads", 1, 1, 1, 1)), 4)
			b.Output(b.Op("Relu", []*ir.Value{y}), "y")
			if shared { // a second conv reading the same weights, without BatchNorm
				b.Output(b.Op("Conv", []*ir.Value{x, w}), "z")
			}
			return b.Graph()
		}
	}
	gemm := func(transB bool) func() *ir.Graph {
		return func() *ir.Graph {
			r := rand.New(rand.NewPCG(4, 4))
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(3), ir.D(5))
			w := f32(r, 5, 6)
			if transB {
				w = f32(r, 6, 5)
			}
			var tb int64
			if transB {
				tb = 1
			}
			y := b.Op("Gemm", []*ir.Value{x, b.Const("w", w), b.Const("c", f32(r, 6))},
				ir.IntAttr("transB", tb), ir.FloatAttr("alpha", 0.5), ir.FloatAttr("beta", 2))
			b.Output(addBN(b, r, y, 6), "y")
			return b.Graph()
		}
	}
	runCases(t, []passCase{
		{name: "conv with bias", build: conv(true, false), passes: []string{"bnfold", "dce"}, want: map[string]int{"Conv": 1, "Relu": 1}, inits: 2},
		{name: "conv without bias", build: conv(false, false), passes: []string{"bnfold", "dce"}, want: map[string]int{"Conv": 1, "Relu": 1}, inits: 2},
		{name: "shared weights", build: conv(false, true), passes: []string{"bnfold", "dce"}, want: map[string]int{"Conv": 2, "Relu": 1}, inits: 3},
		{name: "gemm", build: gemm(false), passes: []string{"bnfold", "dce"}, want: map[string]int{"Gemm": 1}, inits: 2},
		{name: "gemm transB", build: gemm(true), passes: []string{"bnfold", "dce"}, want: map[string]int{"Gemm": 1}, inits: 2},
		{name: "after conv with two readers", passes: []string{"bnfold"}, want: map[string]int{"Conv": 1, "BatchNormalization": 1, "Neg": 1}, inits: -1,
			build: func() *ir.Graph {
				r := rand.New(rand.NewPCG(5, 5))
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(1), ir.D(2), ir.D(4), ir.D(4))
				c := b.Op("Conv", []*ir.Value{x, b.Const("w", f32(r, 2, 2, 1, 1))})
				b.Output(addBN(b, r, c, 2), "y")
				b.Output(b.Op("Neg", []*ir.Value{c}), "z")
				return b.Graph()
			}},
	})
}
