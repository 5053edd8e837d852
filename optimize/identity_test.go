package optimize

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

func TestIdentity(t *testing.T) {
	runCases(t, []passCase{
		{name: "inner", passes: []string{"identity"}, want: map[string]int{"Relu": 1, "Neg": 1}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3))
				y := b.Op("Identity", []*ir.Value{b.Op("Relu", []*ir.Value{x})})
				b.Output(b.Op("Neg", []*ir.Value{b.Op("Identity", []*ir.Value{y})}), "y")
				return b.Graph()
			}},
		{name: "graph output", passes: []string{"identity"}, want: map[string]int{"Relu": 1}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(4))
				b.Output(b.Op("Identity", []*ir.Value{b.Op("Relu", []*ir.Value{x})}), "y")
				return b.Graph()
			}},
		{name: "input to output stays", passes: []string{"identity"}, want: map[string]int{"Identity": 1}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(4))
				b.Output(b.Op("Identity", []*ir.Value{x}), "y")
				return b.Graph()
			}},
		{name: "two outputs of one value", passes: []string{"identity"}, want: map[string]int{"Relu": 1, "Identity": 1}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(4))
				r := b.Op("Relu", []*ir.Value{x})
				b.Output(r, "r")
				b.Output(b.Op("Identity", []*ir.Value{r}), "y")
				return b.Graph()
			}},
	})
}

// TestIdentityInSubgraph checks that Identity nodes inside an If branch go,
// including one that produces the branch's output.
func TestIdentityInSubgraph(t *testing.T) {
	build := func() *ir.Graph {
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, ir.D(3))
		c := b.Input("c", tensor.Float32, ir.D(1))
		branch := func(op string) *ir.Graph {
			sb := ir.NewBuilder("branch_"+op, 17)
			sg := sb.Graph()
			sg.Parent = b.Graph()
			xin := sg.Capture(x)
			sb.Output(sb.Op("Identity", []*ir.Value{sb.Op(op, []*ir.Value{sb.Op("Identity", []*ir.Value{xin})})}), "")
			return sg
		}
		zero := b.Const("zero", tensor.FromFloat32([]float32{0}, 1))
		cond := b.Op("Greater", []*ir.Value{c, zero})
		cond = b.Op("Squeeze", []*ir.Value{cond})
		b.Output(b.Op("If", []*ir.Value{cond}, ir.GraphAttr("then_branch", branch("Relu")), ir.GraphAttr("else_branch", branch("Neg"))), "y")
		return b.Graph()
	}
	ref := build()
	g := build()
	if err := RunPasses(g, lookupAll(t, []string{"identity"}), nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	g.Walk(func(_ *ir.Graph, n2 *ir.Node) {
		if n2.OpType == "Identity" {
			n++
		}
	})
	if n != 0 {
		t.Errorf("%d Identity nodes left", n)
	}
	for _, cv := range []float32{1, -1} {
		in := map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{-1, 2, -3}, 3), "c": tensor.FromFloat32([]float32{cv}, 1)}
		want, got := runGraph(t, ref, in)["y"], runGraph(t, g, in)["y"]
		for i := range want.Float32s() {
			if want.Float32s()[i] != got.Float32s()[i] {
				t.Fatalf("c=%v: got %v, want %v", cv, got.Float32s(), want.Float32s())
			}
		}
	}
}
