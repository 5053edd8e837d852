package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestMatMulAdd(t *testing.T) {
	build := func(biasFirst bool, biasShape []int, act string) func() *ir.Graph {
		return func() *ir.Graph {
			r := rand.New(rand.NewPCG(9, 9))
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(8))
			y := b.Op("MatMul", []*ir.Value{x, b.Const("w", f32(r, 8, 6))})
			bias := b.Const("bias", f32(r, biasShape...))
			if biasFirst {
				y = b.Op("Add", []*ir.Value{bias, y})
			} else {
				y = b.Op("Add", []*ir.Value{y, bias})
			}
			if act != "" {
				y = b.Op(act, []*ir.Value{y})
			}
			b.Output(y, "y")
			return b.Graph()
		}
	}
	fused := map[string]int{"kiln::FusedMatMul": 1}
	runCases(t, []passCase{
		{name: "bias", build: build(false, []int{6}, ""), passes: []string{"matmuladd"}, want: fused, inits: 2},
		{name: "bias first", build: build(true, []int{6}, ""), passes: []string{"matmuladd"}, want: fused, inits: 2},
		{name: "bias relu", build: build(false, []int{6}, "Relu"), passes: []string{"matmuladd"}, want: fused, inits: 2},
		{name: "bias sigmoid", build: build(false, []int{6}, "Sigmoid"), passes: []string{"matmuladd"}, want: fused, inits: 2},
		{name: "2-D addend stays", build: build(false, []int{3, 6}, ""), passes: []string{"matmuladd"}, want: map[string]int{"MatMul": 1, "Add": 1}, inits: 2},
	})
}
