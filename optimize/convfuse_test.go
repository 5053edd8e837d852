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

// TestConvFuseResidualNoBias checks a residual input at position 3 when the
// conv has no bias (input 2 left empty).
func TestConvFuseResidualNoBias(t *testing.T) {
	runCases(t, []passCase{{name: "no bias", passes: []string{"convfuse"}, want: map[string]int{"kiln::FusedConv": 1}, inits: 1,
		build: func() *ir.Graph {
			r := rand.New(rand.NewPCG(13, 13))
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(1), ir.D(3), ir.D(5), ir.D(5))
			y := b.Op("Conv", []*ir.Value{x, b.Const("w", f32(r, 3, 3, 3, 3))}, ir.IntsAttr("pads", 1, 1, 1, 1))
			b.Output(b.Op("Relu", []*ir.Value{b.Op("Add", []*ir.Value{y, x})}), "y")
			return b.Graph()
		}}})
}

// TestConvFuseInSubgraph checks fusion inside both branches of an If, with
// weights local to the branch.
func TestConvFuseInSubgraph(t *testing.T) {
	build := func() *ir.Graph {
		r := rand.New(rand.NewPCG(14, 14))
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, ir.D(1), ir.D(2), ir.D(4), ir.D(4))
		c := b.Input("c", tensor.Float32, ir.D(1))
		branch := func(act string) *ir.Graph {
			sb := ir.NewBuilder("branch_"+act, 17)
			sg := sb.Graph()
			sg.Parent = b.Graph()
			xin := sg.Capture(x)
			y := addBN(sb, r, sb.Op("Conv", []*ir.Value{xin, sb.Const("w_"+act, f32(r, 2, 2, 3, 3))}, ir.IntsAttr("pads", 1, 1, 1, 1)), 2)
			sb.Output(sb.Op(act, []*ir.Value{y}), "")
			return sg
		}
		cond := b.Op("Squeeze", []*ir.Value{b.Op("Greater", []*ir.Value{c, b.Const("zero", tensor.FromFloat32([]float32{0}, 1))})})
		b.Output(b.Op("If", []*ir.Value{cond}, ir.GraphAttr("then_branch", branch("Relu")), ir.GraphAttr("else_branch", branch("Sigmoid"))), "y")
		return b.Graph()
	}
	ref, g := build(), build()
	if err := Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range g.Nodes {
		for _, sg := range n.Subgraphs() {
			if got := opCounts(sg); len(got) != 1 || got["kiln::FusedConv"] != 1 {
				t.Errorf("branch %s: ops %v, want one FusedConv", sg.Name, got)
			}
		}
	}
	r := rand.New(rand.NewPCG(15, 15))
	for _, cv := range []float32{1, -1} {
		in := map[string]*tensor.Tensor{"x": randF32(r, 1, 2, 4, 4), "c": tensor.FromFloat32([]float32{cv}, 1)}
		want, got := runGraph(t, ref, in)["y"], runGraph(t, g, in)["y"]
		for i := range want.Float32s() {
			if d := want.Float32s()[i] - got.Float32s()[i]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("c=%v: element %d is %v, want %v", cv, i, got.Float32s()[i], want.Float32s()[i])
			}
		}
	}
}
