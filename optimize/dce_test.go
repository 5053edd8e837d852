package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestDCE(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	w := f32(r, 4, 4)
	runCases(t, []passCase{
		{name: "dead chain and initializer", passes: []string{"dce"}, want: map[string]int{"MatMul": 1}, inits: 1,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(2), ir.D(4))
				wv := b.Const("w", w)
				unused := b.Const("unused", w)
				_ = unused
				dead := b.Op("Relu", []*ir.Value{b.Op("MatMul", []*ir.Value{x, wv})})
				b.Op("Neg", []*ir.Value{dead})
				b.Output(b.Op("MatMul", []*ir.Value{x, wv}), "y")
				return b.Graph()
			}},
		{name: "multi-output node with one output used", passes: []string{"dce"}, want: map[string]int{"Split": 1}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(4))
				outs := b.OpN("Split", 2, []*ir.Value{x}, ir.IntAttr("num_outputs", 2))
				b.Output(outs[1], "y")
				return b.Graph()
			}},
	})
}
