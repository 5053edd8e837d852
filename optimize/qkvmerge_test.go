package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestQKVMerge(t *testing.T) {
	// projections builds len(acts) projections of x [2,5,8] to 4, 6, 8...
	// columns, each with a bias Add when bias is set and then the given
	// activation ("" for none), and outputs each through Neg.
	projections := func(opset int64, bias bool, acts ...string) func() *ir.Graph {
		return func() *ir.Graph {
			r := rand.New(rand.NewPCG(4, 4))
			b := ir.NewBuilder("g", opset)
			x := b.Op("Relu", []*ir.Value{b.Input("x", tensor.Float32, ir.D(2), ir.D(5), ir.D(8))})
			for i, act := range acts {
				n := 4 + 2*i
				y := b.Op("MatMul", []*ir.Value{x, b.Const("", f32(r, 8, n))})
				if bias {
					y = b.Op("Add", []*ir.Value{y, b.Const("", f32(r, n))})
				}
				if act != "" {
					y = b.Op(act, []*ir.Value{y})
				}
				b.Output(b.Op("Neg", []*ir.Value{y}), "")
			}
			return b.Graph()
		}
	}
	passes := []string{"matmuladd", "qkvmerge", "dce"}
	merged := func(extra map[string]int) map[string]int {
		m := map[string]int{"Relu": 1, "kiln::FusedMatMul": 1, "Split": 1, "Neg": 3}
		for k, v := range extra {
			m[k] += v
		}
		return m
	}
	runCases(t, []passCase{
		{name: "q k v with bias", build: projections(17, true, "", "", ""), passes: passes, want: merged(nil), inits: 3},
		{name: "no bias", build: projections(17, false, "", "", ""), passes: passes, want: merged(nil), inits: 2},
		{name: "same activation", build: projections(17, true, "Sigmoid", "Sigmoid", "Sigmoid"), passes: passes, want: merged(nil), inits: 3},
		{name: "opset 11", build: projections(11, true, "", "", ""), passes: passes, want: merged(nil), inits: 2},
		{name: "two of three activations", build: projections(17, true, "Relu", "", "Relu"), passes: passes,
			want: map[string]int{"Relu": 1, "kiln::FusedMatMul": 2, "Split": 1, "Neg": 3}, inits: 5},
		{name: "one stays", build: projections(17, true, ""), passes: passes,
			want: map[string]int{"Relu": 1, "kiln::FusedMatMul": 1, "Neg": 1}, inits: 2},
		{name: "some with bias", passes: passes, want: map[string]int{"kiln::FusedMatMul": 1, "Split": 1}, inits: 3,
			build: func() *ir.Graph {
				r := rand.New(rand.NewPCG(5, 5))
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(3), ir.D(8))
				y1 := b.Op("Add", []*ir.Value{b.Op("MatMul", []*ir.Value{x, b.Const("", f32(r, 8, 4))}), b.Const("", f32(r, 4))})
				y2 := b.Op("MatMul", []*ir.Value{x, b.Const("", f32(r, 8, 5))})
				b.Output(y1, "y1") // graph outputs come from the Split
				b.Output(y2, "y2")
				return b.Graph()
			}},
		{name: "weights given at run time stay", passes: passes, want: map[string]int{"MatMul": 2}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(3), ir.D(8))
				w := b.Input("w", tensor.Float32, ir.D(8), ir.D(4))
				b.Output(b.Op("MatMul", []*ir.Value{x, w}), "y1")
				b.Output(b.Op("MatMul", []*ir.Value{x, w}), "y2")
				return b.Graph()
			}},
	})
}

// selfAttention builds one attention block of a transformer as PyTorch
// exports it, with separate Q, K and V projections: x [2,5,16], 2 heads.
func selfAttention() *ir.Graph {
	r := rand.New(rand.NewPCG(8, 8))
	b := ir.NewBuilder("g", 17)
	x := b.Input("x", tensor.Float32, ir.D(2), ir.D(5), ir.D(16))
	heads := func(y *ir.Value, perm ...int64) *ir.Value {
		return b.Op("Transpose", []*ir.Value{reshapeTo(b, y, 2, 5, 2, 8)}, ir.IntsAttr("perm", perm...))
	}
	proj := func() *ir.Value {
		return b.Op("Add", []*ir.Value{b.Op("MatMul", []*ir.Value{x, b.Const("", f32(r, 16, 16))}), b.Const("", f32(r, 16))})
	}
	q, k, v := heads(proj(), 0, 2, 1, 3), heads(proj(), 0, 2, 3, 1), heads(proj(), 0, 2, 1, 3)
	s := b.Op("Div", []*ir.Value{b.Op("MatMul", []*ir.Value{q, k}), b.Const("", tensor.Scalar(tensor.Float32, 2.828))})
	a := b.Op("MatMul", []*ir.Value{b.Op("Softmax", []*ir.Value{s}, ir.IntAttr("axis", -1)), v})
	a = reshapeTo(b, b.Op("Transpose", []*ir.Value{a}, ir.IntsAttr("perm", 0, 2, 1, 3)), 2, 5, 16)
	b.Output(b.Op("Add", []*ir.Value{x, a}), "y")
	return b.Graph()
}

// TestQKVMergeKeepsAttention runs all the level-2 passes on an attention
// block with separate projections: they merge and attention still fuses.
func TestQKVMergeKeepsAttention(t *testing.T) {
	var names []string
	for _, p := range Passes(2) {
		names = append(names, p.Name())
	}
	runCases(t, []passCase{{name: "attention", build: selfAttention, passes: names, inits: 7,
		want: map[string]int{"kiln::FusedMatMul": 1, "Split": 1, "Reshape": 4, "Transpose": 4, "kiln::Attention": 1, "Add": 1}}})
}
