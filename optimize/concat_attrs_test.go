package optimize

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// TestConcatDefaultAxis: before opset 4 a Concat without "axis" joins
// along axis 1 (ops.ConcatAttrs), so the outputs of a Split along axis 0
// joined by it are not its input: the concat pass keeps the pair.
func TestConcatDefaultAxis(t *testing.T) {
	passes := []string{"concat", "dce"}
	split := func(opset int64, concatAxis []*ir.Attr) func() *ir.Graph {
		return func() *ir.Graph {
			b := ir.NewBuilder("g", opset)
			x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(3))})
			parts := b.OpN("Split", 2, []*ir.Value{x}, ir.IntAttr("axis", 0))
			b.Output(b.Op("Neg", []*ir.Value{b.Op("Concat", parts, concatAxis...)}), "y")
			return b.Graph()
		}
	}
	kept := map[string]int{"Relu": 1, "Split": 1, "Concat": 1, "Neg": 1}
	runCases(t, []passCase{
		{name: "opset 3 no axis stays", build: split(3, nil), passes: passes, want: kept, inits: 0},
		{name: "opset 3 axis 0", build: split(3, []*ir.Attr{ir.IntAttr("axis", 0)}), passes: passes, want: map[string]int{"Relu": 1, "Neg": 1}, inits: 0},
	})
}
