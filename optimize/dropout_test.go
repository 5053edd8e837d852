package optimize

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestDropout(t *testing.T) {
	build := func(opset int64, mask, training bool) func() *ir.Graph {
		return func() *ir.Graph {
			b := ir.NewBuilder("g", opset)
			x := b.Input("x", tensor.Float32, ir.D(2), ir.D(5))
			in := []*ir.Value{b.Op("Relu", []*ir.Value{x})}
			if opset >= 12 {
				tm := tensor.New(tensor.Bool, 0)
				tm.Shape = []int{}
				tm.Data = []byte{0}
				if training {
					tm.Data = []byte{1}
				}
				in = append(in, b.Const("ratio", tensor.Scalar(tensor.Float32, 0.5)), b.Const("training", tm))
			}
			outs := b.OpN("Dropout", 2, in)
			y := b.Op("Neg", outs[:1])
			b.Output(y, "y")
			if mask {
				b.Output(outs[1], "mask")
			}
			return b.Graph()
		}
	}
	runCases(t, []passCase{
		{name: "opset 11", build: build(11, false, false), passes: []string{"dropout"}, want: map[string]int{"Relu": 1, "Neg": 1}, inits: 0},
		{name: "opset 13 inference", build: build(13, false, false), passes: []string{"dropout"}, want: map[string]int{"Relu": 1, "Neg": 1}, inits: 2},
		{name: "mask used", build: build(13, true, false), passes: []string{"dropout"}, want: map[string]int{"Relu": 1, "Neg": 1, "Dropout": 1}, inits: 2},
	})
	// in training mode it is random: it must stay
	g := build(13, false, true)()
	if err := RunPasses(g, lookupAll(t, []string{"dropout"}), nil); err != nil {
		t.Fatal(err)
	}
	if opCounts(g)["Dropout"] != 1 {
		t.Errorf("training Dropout removed: %v", opCounts(g))
	}
}
