package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// convBlock builds x -> Conv -> BN? -> (Add residual)? -> activation, where
// act adds the activation node(s) to its input.
func convBlock(bn, residual bool, act func(b *ir.Builder, y *ir.Value) *ir.Value) func() *ir.Graph {
	return func() *ir.Graph {
		r := rand.New(rand.NewPCG(6, 6))
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, ir.D(2), ir.D(4), ir.D(5), ir.D(5))
		y := b.Op("Conv", []*ir.Value{x, b.Const("w", f32(r, 4, 4, 3, 3)), b.Const("b", f32(r, 4))}, ir.IntsAttr("pads", 1, 1, 1, 1))
		if bn {
			y = addBN(b, r, y, 4)
		}
		if residual {
			y = b.Op("Add", []*ir.Value{x, y})
		}
		if act != nil {
			y = act(b, y)
		}
		b.Output(y, "y")
		return b.Graph()
	}
}

func unary(op string, attrs ...*ir.Attr) func(b *ir.Builder, y *ir.Value) *ir.Value {
	return func(b *ir.Builder, y *ir.Value) *ir.Value { return b.Op(op, []*ir.Value{y}, attrs...) }
}

func TestConvFuse(t *testing.T) {
	fused := map[string]int{"kiln::FusedConv": 1}
	relu6 := func(b *ir.Builder, y *ir.Value) *ir.Value {
		return b.Op("Clip", []*ir.Value{y, b.Const("", tensor.Scalar(tensor.Float32, 0)), b.Const("", tensor.Scalar(tensor.Float32, 6))})
	}
	silu := func(b *ir.Builder, y *ir.Value) *ir.Value {
		return b.Op("Mul", []*ir.Value{y, b.Op("Sigmoid", []*ir.Value{y})})
	}
	all := []string{"bnfold", "convfuse", "dce"}
	runCases(t, []passCase{
		{name: "plain conv", build: convBlock(false, false, nil), passes: all, want: fused, inits: 2},
		{name: "relu", build: convBlock(false, false, unary("Relu")), passes: all, want: fused, inits: 2},
		{name: "bn relu", build: convBlock(true, false, unary("Relu")), passes: all, want: fused, inits: 2},
		{name: "relu6", build: convBlock(true, false, relu6), passes: all, want: fused, inits: 2},
		{name: "sigmoid", build: convBlock(false, false, unary("Sigmoid")), passes: all, want: fused, inits: 2},
		{name: "silu", build: convBlock(true, false, silu), passes: all, want: fused, inits: 2},
		{name: "hardswish", build: convBlock(false, false, unary("HardSwish")), passes: all, want: fused, inits: 2},
		{name: "leakyrelu", build: convBlock(false, false, unary("LeakyRelu", ir.FloatAttr("alpha", 0.2))), passes: all, want: fused, inits: 2},
		{name: "residual", build: convBlock(true, true, nil), passes: all, want: fused, inits: 2},
		{name: "residual relu", build: convBlock(true, true, unary("Relu")), passes: all, want: fused, inits: 2},
		{name: "unsupported activation stays", build: convBlock(false, false, unary("Tanh")), passes: all, want: map[string]int{"kiln::FusedConv": 1, "Tanh": 1}, inits: 2},
		{name: "broadcast add is not residual", passes: all, want: map[string]int{"kiln::FusedConv": 1, "Add": 1}, inits: 2,
			build: func() *ir.Graph {
				r := rand.New(rand.NewPCG(7, 7))
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(1), ir.D(2), ir.D(4), ir.D(4))
				y := b.Op("Conv", []*ir.Value{x, b.Const("w", f32(r, 2, 2, 1, 1))})
				b.Output(b.Op("Add", []*ir.Value{y, b.Const("k", f32(r, 2, 1, 1))}), "y")
				return b.Graph()
			}},
		{name: "two convs into one add", passes: all, want: map[string]int{"kiln::FusedConv": 2}, inits: 4,
			build: func() *ir.Graph {
				r := rand.New(rand.NewPCG(8, 8))
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(1), ir.D(3), ir.D(6), ir.D(6))
				main := addBN(b, r, b.Op("Conv", []*ir.Value{x, b.Const("w1", f32(r, 5, 3, 3, 3))}, ir.IntsAttr("pads", 1, 1, 1, 1)), 5)
				short := addBN(b, r, b.Op("Conv", []*ir.Value{x, b.Const("w2", f32(r, 5, 3, 1, 1))}), 5)
				b.Output(b.Op("Relu", []*ir.Value{b.Op("Add", []*ir.Value{main, short})}), "y")
				return b.Graph()
			}},
	})
}

// TestConvFuseAttrs checks the epilogue written on the fused node.
func TestConvFuseAttrs(t *testing.T) {
	g := convBlock(true, true, unary("Relu"))()
	if err := Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 1 {
		t.Fatalf("nodes %v", g.Nodes)
	}
	n := g.Nodes[0]
	if a := n.Attrs["activation"]; a == nil || a.S != "Relu" {
		t.Errorf("activation %v, want Relu", a)
	}
	if n.Input(3) == nil || n.Input(3).Name != "x" {
		t.Errorf("residual input %v, want x", n.Input(3))
	}
	if g.Opsets["kiln"] != 1 {
		t.Errorf("opsets %v: the kiln domain is not imported", g.Opsets)
	}
}
