package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestConstFold(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	w := f32(r, 64, 300) // 19200 elements: folded here, not by the engine's small-fold limit alone
	runCases(t, []passCase{
		{name: "transposed weights", passes: []string{"constfold", "dce"}, want: map[string]int{"MatMul": 1}, inits: 1,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(3), ir.D(300))
				wt := b.Op("Transpose", []*ir.Value{b.Const("w", w)}, ir.IntsAttr("perm", 1, 0))
				b.Output(b.Op("MatMul", []*ir.Value{x, wt}), "y")
				return b.Graph()
			}},
		{name: "chain of constants", passes: []string{"constfold", "dce"}, want: map[string]int{"Add": 1}, inits: 1,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(4))
				c := b.Const("c", tensor.FromFloat32([]float32{1, 2, 3, 4}, 4))
				c2 := b.Op("Mul", []*ir.Value{b.Op("Sqrt", []*ir.Value{c}), c})
				b.Output(b.Op("Add", []*ir.Value{x, c2}), "y")
				return b.Graph()
			}},
		{name: "constant graph output", passes: []string{"constfold", "dce"}, want: map[string]int{"Relu": 1}, inits: 1,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(2))
				b.Output(b.Op("Relu", []*ir.Value{x}), "y")
				b.Output(b.Op("Neg", []*ir.Value{b.Const("c", tensor.FromFloat32([]float32{1, -2}, 2))}), "k")
				return b.Graph()
			}},
	})
}

// TestConstFoldKeeps checks what constant folding must leave alone: random
// generators, inputs with a default value, and outputs over the size bound.
func TestConstFoldKeeps(t *testing.T) {
	tests := []struct {
		name  string
		build func() *ir.Graph
		op    string
	}{
		{"random", func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(2))
			noise := b.Op("RandomUniform", nil, ir.IntsAttr("shape", 2))
			b.Output(b.Op("Add", []*ir.Value{x, noise}), "y")
			return b.Graph()
		}, "RandomUniform"},
		{"overridable input", func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(2))
			x.Const = tensor.FromFloat32([]float32{1, 2}, 2)
			b.Output(b.Op("Neg", []*ir.Value{x}), "y")
			return b.Graph()
		}, "Neg"},
		{"too large", func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(1))
			shape := b.Const("shape", tensor.FromInt64([]int64{FoldMaxOutput + 1}, 1))
			big := b.Op("ConstantOfShape", []*ir.Value{shape})
			b.Output(b.Op("ReduceSum", []*ir.Value{b.Op("Add", []*ir.Value{big, x})}, ir.IntAttr("keepdims", 0)), "y")
			return b.Graph()
		}, "ConstantOfShape"},
	}
	for _, tt := range tests {
		g := tt.build()
		if err := RunPasses(g, lookupAll(t, []string{"constfold", "dce"}), nil); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if opCounts(g)[tt.op] != 1 {
			t.Errorf("%s: %s folded: %v", tt.name, tt.op, opCounts(g))
		}
	}
}
