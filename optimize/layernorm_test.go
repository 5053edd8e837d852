package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// lnGraph builds a decomposed layer normalization of x [2,3,8].
func lnGraph(opset int64, square string, affine int, axis int64) func() *ir.Graph {
	return func() *ir.Graph {
		r := rand.New(rand.NewPCG(11, 11))
		b := ir.NewBuilder("g", opset)
		x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(8))
		mean := func(v *ir.Value) *ir.Value {
			if opset >= 18 {
				return b.Op("ReduceMean", []*ir.Value{v, b.Const("", tensor.FromInt64([]int64{axis}, 1))})
			}
			return b.Op("ReduceMean", []*ir.Value{v}, ir.IntsAttr("axes", axis))
		}
		d := b.Op("Sub", []*ir.Value{x, mean(x)})
		var sq *ir.Value
		if square == "pow" {
			sq = b.Op("Pow", []*ir.Value{d, b.Const("", tensor.Scalar(tensor.Float32, 2))})
		} else {
			sq = b.Op("Mul", []*ir.Value{d, d})
		}
		std := b.Op("Sqrt", []*ir.Value{b.Op("Add", []*ir.Value{mean(sq), b.Const("", tensor.Scalar(tensor.Float32, 1e-5))})})
		y := b.Op("Div", []*ir.Value{d, std})
		if affine >= 1 {
			y = b.Op("Mul", []*ir.Value{y, b.Const("gamma", f32(r, 8))})
		}
		if affine >= 2 {
			y = b.Op("Add", []*ir.Value{b.Const("beta", f32(r, 8)), y})
		}
		b.Output(y, "y")
		return b.Graph()
	}
}

func TestLayerNorm(t *testing.T) {
	passes := []string{"layernorm", "dce"}
	runCases(t, []passCase{
		{name: "opset 17 pow affine", build: lnGraph(17, "pow", 2, -1), passes: passes, want: map[string]int{"LayerNormalization": 1}, inits: 2},
		{name: "opset 13 mul affine", build: lnGraph(13, "mul", 2, 2), passes: passes, want: map[string]int{"kiln::LayerNormalization": 1}, inits: 2},
		{name: "opset 18 axes input, scale only", build: lnGraph(18, "pow", 1, -1), passes: passes, want: map[string]int{"LayerNormalization": 1}, inits: 1},
		{name: "no affine", build: lnGraph(17, "pow", 0, -1), passes: passes, want: map[string]int{"LayerNormalization": 1}, inits: 1},
		{name: "not the last axis", build: lnGraph(17, "pow", 2, 1), passes: passes,
			want: map[string]int{"ReduceMean": 2, "Sub": 1, "Pow": 1, "Add": 2, "Sqrt": 1, "Div": 1, "Mul": 1}, inits: 4},
	})
}
