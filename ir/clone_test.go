package ir_test

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestClone(t *testing.T) {
	b := ir.NewBuilder("g", 17)
	x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(4))
	w := b.Const("w", tensor.New(tensor.Float32, 4, 4))
	y := b.Op("MatMul", []*ir.Value{x, w}, ir.IntsAttr("unused", 1, 2))
	b.Output(y, "y")
	g := b.Graph()
	c := g.Clone()
	if len(c.Nodes) != len(g.Nodes) || c.Nodes[0] == g.Nodes[0] || c.Inputs[0] == g.Inputs[0] {
		t.Fatal("clone shares nodes or values")
	}
	if c.Nodes[0].Outputs[0].Producer != c.Nodes[0] || c.Nodes[0].Inputs[0] != c.Inputs[0] || c.Outputs[0] != c.Nodes[0].Outputs[0] {
		t.Fatal("clone's values are not wired to its own nodes")
	}
	var cw *ir.Value
	for _, v := range append(c.Initializers, c.Inputs...) {
		if v.Name == "w" {
			cw = v
		}
	}
	if cw == nil || cw.Const != w.Const {
		t.Fatal("constant tensors should be shared")
	}
	c.Inputs[0].Type.Shape[0] = ir.D(8)
	c.Nodes[0].Attrs["unused"].Ints[0] = 9
	if !g.Inputs[0].Type.Shape[0].Symbolic() || g.Nodes[0].Attrs["unused"].Ints[0] != 1 {
		t.Fatal("changing the clone changed the original")
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
