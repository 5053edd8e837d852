package optimize

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestShapeFold(t *testing.T) {
	// Reshape(x, Concat(Gather(Shape(x), 0), [-1])): a flatten written the
	// way exporters do.
	build := func(batch ir.Dim) func() *ir.Graph {
		return func() *ir.Graph {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, batch, ir.D(3), ir.D(4))
			s := b.Op("Shape", []*ir.Value{x})
			n := b.Op("Gather", []*ir.Value{s, b.Const("zero", tensor.FromInt64([]int64{0}, 1))}, ir.IntAttr("axis", 0))
			shape := b.Op("Concat", []*ir.Value{n, b.Const("minus1", tensor.FromInt64([]int64{-1}, 1))}, ir.IntAttr("axis", 0))
			b.Output(b.Op("Reshape", []*ir.Value{x, shape}), "y")
			return b.Graph()
		}
	}
	runCases(t, []passCase{
		{name: "static", build: build(ir.D(2)), passes: []string{"shapefold", "constfold", "dce"}, want: map[string]int{"Reshape": 1}, inits: 1},
	})
	// with a symbolic batch the chain stays
	g := build(ir.S("batch"))()
	if err := RunPasses(g, lookupAll(t, []string{"shapefold", "constfold", "dce"}), nil); err != nil {
		t.Fatal(err)
	}
	if opCounts(g)["Shape"] != 1 {
		t.Errorf("symbolic shape folded: %v", opCounts(g))
	}
}
