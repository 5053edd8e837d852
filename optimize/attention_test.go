package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// attnGraph builds Softmax(Q K [scale] [+ mask]) V over [2,4,5,8] heads.
func attnGraph(scale string, mask, extraReader bool) func() *ir.Graph {
	return func() *ir.Graph {
		r := rand.New(rand.NewPCG(12, 12))
		b := ir.NewBuilder("g", 17)
		q := b.Input("q", tensor.Float32, ir.D(2), ir.D(4), ir.D(5), ir.D(8))
		k := b.Input("k", tensor.Float32, ir.D(2), ir.D(4), ir.D(8), ir.D(5))
		v := b.Input("v", tensor.Float32, ir.D(2), ir.D(4), ir.D(5), ir.D(8))
		s := b.Op("MatMul", []*ir.Value{q, k})
		raw := s
		switch scale {
		case "div":
			s = b.Op("Div", []*ir.Value{s, b.Const("", tensor.Scalar(tensor.Float32, 2.828427))})
		case "mul":
			s = b.Op("Mul", []*ir.Value{b.Const("", tensor.Scalar(tensor.Float32, 0.35355)), s})
		}
		if mask {
			m := f32(r, 2, 1, 1, 5)
			m.Float32s()[3] = -10000
			s = b.Op("Add", []*ir.Value{b.Const("mask", m), s})
		}
		b.Output(b.Op("MatMul", []*ir.Value{b.Op("Softmax", []*ir.Value{s}, ir.IntAttr("axis", -1)), v}), "y")
		if extraReader {
			b.Output(raw, "scores")
		}
		return b.Graph()
	}
}

func TestAttention(t *testing.T) {
	fused := map[string]int{"kiln::Attention": 1}
	passes := []string{"attention", "dce"}
	runCases(t, []passCase{
		{name: "div and mask", build: attnGraph("div", true, false), passes: passes, want: fused, inits: 1},
		{name: "mul scale", build: attnGraph("mul", true, false), passes: passes, want: fused, inits: 1},
		{name: "no scale, mask", build: attnGraph("", true, false), passes: passes, want: fused, inits: 1},
		{name: "no mask", build: attnGraph("div", false, false), passes: passes, want: fused, inits: 0},
		{name: "scores read elsewhere", build: attnGraph("div", true, true), passes: passes,
			want: map[string]int{"MatMul": 2, "Div": 1, "Add": 1, "Softmax": 1}, inits: 2},
	})
}
