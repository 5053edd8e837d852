package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestTranspose(t *testing.T) {
	// chain builds x -> Transpose(p) for each perm (nil: no attribute) ->
	// Relu, x of shape [2,3,4,5].
	chain := func(perms ...[]int64) func() *ir.Graph {
		return func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			y := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(4), ir.D(5))
			for _, p := range perms {
				if p == nil {
					y = b.Op("Transpose", []*ir.Value{y})
				} else {
					y = b.Op("Transpose", []*ir.Value{y}, ir.IntsAttr("perm", p...))
				}
			}
			b.Output(b.Op("Relu", []*ir.Value{y}), "y")
			return b.Graph()
		}
	}
	passes := []string{"transpose", "dce"}
	one := map[string]int{"Transpose": 1, "Relu": 1}
	none := map[string]int{"Relu": 1}
	runCases(t, []passCase{
		{name: "identity perm", build: chain([]int64{0, 1, 2, 3}), passes: passes, want: none, inits: 0},
		{name: "inverse pair", build: chain([]int64{0, 2, 3, 1}, []int64{0, 3, 1, 2}), passes: passes, want: none, inits: 0},
		{name: "reversal twice", build: chain(nil, nil), passes: passes, want: none, inits: 0},
		{name: "composed", build: chain([]int64{0, 2, 1, 3}, []int64{0, 1, 3, 2}), passes: passes, want: one, inits: 0},
		{name: "three", build: chain([]int64{1, 0, 2, 3}, []int64{0, 2, 1, 3}, []int64{3, 2, 1, 0}), passes: passes, want: one, inits: 0},
		{name: "single stays", build: chain([]int64{0, 2, 1, 3}), passes: passes, want: one, inits: 0},
		// y = x would need an Identity: the outer one stays, with the identity perm
		{name: "inner read elsewhere", passes: passes, want: map[string]int{"Transpose": 2, "Neg": 1}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3))
				a := b.Op("Transpose", []*ir.Value{x}, ir.IntsAttr("perm", 1, 0))
				b.Output(b.Op("Transpose", []*ir.Value{a}, ir.IntsAttr("perm", 1, 0)), "y")
				b.Output(b.Op("Neg", []*ir.Value{a}), "z")
				return b.Graph()
			}},
		{name: "graph output", passes: passes, want: map[string]int{"Relu": 1}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3))
				a := b.Op("Transpose", []*ir.Value{b.Op("Relu", []*ir.Value{x})}, ir.IntsAttr("perm", 1, 0))
				b.Output(b.Op("Transpose", []*ir.Value{a}, ir.IntsAttr("perm", 1, 0)), "y")
				return b.Graph()
			}},
		{name: "constant folded by constfold", passes: []string{"transpose", "constfold", "dce"}, want: map[string]int{"Add": 1}, inits: 1,
			build: func() *ir.Graph {
				r := rand.New(rand.NewPCG(3, 3))
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(3), ir.D(2))
				c := b.Op("Transpose", []*ir.Value{b.Const("c", f32(r, 2, 3))}, ir.IntsAttr("perm", 1, 0))
				b.Output(b.Op("Add", []*ir.Value{x, c}), "y")
				return b.Graph()
			}},
	})
}
