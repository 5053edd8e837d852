package optimize

import (
	"fmt"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// ints returns a constant int64 vector.
func ints(b *ir.Builder, v ...int64) *ir.Value {
	t := tensor.New(tensor.Int64, len(v))
	copy(t.Int64s(), v)
	return b.Const("", t)
}

// reshapeTo adds Reshape(x, shape).
func reshapeTo(b *ir.Builder, x *ir.Value, shape ...int64) *ir.Value {
	return b.Op("Reshape", []*ir.Value{x, ints(b, shape...)})
}

func TestReshape(t *testing.T) {
	bs := map[string]int{"batch": 3, "seq": 5, "h": 2, "w": 3}
	passes := []string{"reshape", "dce"}
	runCases(t, []passCase{
		{name: "to own shape", passes: passes, want: map[string]int{"Relu": 1}, inits: 0,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(4))
				b.Output(b.Op("Relu", []*ir.Value{reshapeTo(b, x, 2, 3, 4)}), "y")
				return b.Graph()
			}},
		{name: "to own symbolic shape", passes: passes, want: map[string]int{"Relu": 1}, inits: 0, bind: bs,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(3), ir.D(4))
				b.Output(b.Op("Relu", []*ir.Value{reshapeTo(b, x, 0, 3, -1)}), "y")
				return b.Graph()
			}},
		{name: "unsqueeze flatten", passes: passes, want: map[string]int{"Reshape": 1, "Relu": 1}, inits: 1,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(4))
				y := b.Op("Unsqueeze", []*ir.Value{x, ints(b, 1)})
				y = b.Op("Flatten", []*ir.Value{y}, ir.IntAttr("axis", 2))
				b.Output(b.Op("Relu", []*ir.Value{y}), "y")
				return b.Graph()
			}},
		{name: "chain of three with a batch", passes: passes, want: map[string]int{"Reshape": 1, "Relu": 1}, inits: 1, bind: bs,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(6), ir.D(4))
				y := reshapeTo(b, x, 0, 24)
				y = b.Op("Unsqueeze", []*ir.Value{y, ints(b, 1)})
				y = b.Op("Squeeze", []*ir.Value{reshapeTo(b, y, 0, 1, 4, 6), ints(b, 1)})
				b.Output(b.Op("Relu", []*ir.Value{y}), "y")
				return b.Graph()
			}},
		{name: "chain to one open dim", passes: passes, want: map[string]int{"Reshape": 1, "Relu": 1}, inits: 1, bind: bs,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.S("batch"), ir.S("seq"), ir.D(4))
				y := reshapeTo(b, reshapeTo(b, x, 0, -1), -1, 2)
				b.Output(b.Op("Relu", []*ir.Value{y}), "y")
				return b.Graph()
			}},
		{name: "chain that needs a run-time size stays", passes: passes, want: map[string]int{"Reshape": 2, "Relu": 1}, inits: 2, bind: bs,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.S("batch"), ir.S("seq"), ir.D(4))
				y := reshapeTo(b, reshapeTo(b, x, 0, 0, 2, 2), 0, -1, 2)
				b.Output(b.Op("Relu", []*ir.Value{y}), "y")
				return b.Graph()
			}},
		{name: "shape computed at run time", passes: passes, want: map[string]int{"Reshape": 1, "Transpose": 1}, inits: 1, bind: bs,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.S("batch"), ir.S("seq"), ir.D(8))
				s := b.Op("Shape", []*ir.Value{x})
				n := b.Op("Unsqueeze", []*ir.Value{b.Op("Gather", []*ir.Value{s, b.Const("", tensor.Scalar(tensor.Int64, 0))}), ints(b, 0)})
				m := b.Op("Unsqueeze", []*ir.Value{b.Op("Gather", []*ir.Value{s, b.Const("", tensor.Scalar(tensor.Int64, 1))}), ints(b, 0)})
				shape := b.Op("Concat", []*ir.Value{n, m, ints(b, 2), ints(b, 4)}, ir.IntAttr("axis", 0))
				y := b.Op("Reshape", []*ir.Value{x, shape})
				b.Output(b.Op("Transpose", []*ir.Value{y}, ir.IntsAttr("perm", 0, 2, 1, 3)), "y")
				return b.Graph()
			}},
		{name: "run-time shape keeps its -1", passes: passes, want: map[string]int{"Reshape": 1, "Relu": 1}, inits: 1, bind: bs,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.S("batch"), ir.D(4), ir.S("h"), ir.S("w"))
				s := b.Op("Slice", []*ir.Value{b.Op("Shape", []*ir.Value{x}), ints(b, 0), ints(b, 2)})
				y := b.Op("Reshape", []*ir.Value{x, b.Op("Concat", []*ir.Value{s, ints(b, -1)}, ir.IntAttr("axis", 0))})
				b.Output(b.Op("Relu", []*ir.Value{y}), "y")
				return b.Graph()
			}},
		{name: "run-time shape of another symbol stays", passes: passes, want: map[string]int{"Reshape": 1, "Relu": 1, "Shape": 1, "Gather": 1, "Concat": 1}, inits: 2, bind: bs,
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.S("batch"), ir.S("seq"), ir.D(4))
				// [seq, batch*4]: seq sits where x has batch, so no 0 can say it
				s := b.Op("Gather", []*ir.Value{b.Op("Shape", []*ir.Value{x}), ints(b, 1)})
				y := b.Op("Reshape", []*ir.Value{x, b.Op("Concat", []*ir.Value{s, ints(b, -1)}, ir.IntAttr("axis", 0))})
				b.Output(b.Op("Relu", []*ir.Value{y}), "y")
				return b.Graph()
			}},
	})
}

// TestEliminationsInSubgraph runs transpose, reshape and concat on the
// branches of an If: a Transpose pair and an Unsqueeze+Flatten chain in
// one (which end up doing nothing at all), a Split+Concat in the other.
func TestEliminationsInSubgraph(t *testing.T) {
	build := func() *ir.Graph {
		b := ir.NewBuilder("g", 17)
		x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3))
		c := b.Input("c", tensor.Float32, ir.D(1))
		branch := func(then bool) *ir.Graph {
			sb := ir.NewBuilder("branch", 17)
			sg := sb.Graph()
			sg.Parent = b.Graph()
			y := sb.Op("Relu", []*ir.Value{sg.Capture(x)})
			if then {
				y = sb.Op("Transpose", []*ir.Value{y}, ir.IntsAttr("perm", 1, 0))
				y = sb.Op("Transpose", []*ir.Value{y}, ir.IntsAttr("perm", 1, 0))
				y = sb.Op("Unsqueeze", []*ir.Value{y, ints(sb, 0)})
				y = sb.Op("Flatten", []*ir.Value{y}, ir.IntAttr("axis", 2))
			} else {
				y = sb.Op("Concat", sb.OpN("Split", 2, []*ir.Value{y}, ir.IntAttr("axis", 1), ir.IntAttr("num_outputs", 2)), ir.IntAttr("axis", 1))
				y = sb.Op("Unsqueeze", []*ir.Value{y, ints(sb, 0)})
			}
			sb.Output(y, "")
			return sg
		}
		cond := b.Op("Squeeze", []*ir.Value{b.Op("Greater", []*ir.Value{c, b.Const("zero", tensor.FromFloat32([]float32{0}, 1))})})
		b.Output(b.Op("If", []*ir.Value{cond}, ir.GraphAttr("then_branch", branch(true)), ir.GraphAttr("else_branch", branch(false))), "y")
		return b.Graph()
	}
	ref, g := build(), build()
	var logs []string
	if err := RunPasses(g, lookupAll(t, []string{"transpose", "reshape", "concat", "dce"}), func(pass, msg string) {
		logs = append(logs, pass+": "+msg)
	}); err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, n := range g.Nodes {
		for _, sg := range n.Subgraphs() {
			for k, v := range opCounts(sg) {
				ops[k] += v
			}
		}
	}
	if want := map[string]int{"Relu": 2, "Unsqueeze": 1}; fmt.Sprint(ops) != fmt.Sprint(want) {
		t.Errorf("ops in the branches: %v, want %v (log %q)", ops, want, logs)
	}
	for _, cv := range []float32{1, -1} {
		in := map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{-1, 2, -3, 4, 5, -6}, 2, 3), "c": tensor.FromFloat32([]float32{cv}, 1)}
		if c := compare(runGraph(t, g, in)["y"], runGraph(t, ref, in)["y"], 0, 0); !c.OK {
			t.Errorf("c=%v: %s", cv, c.Reason)
		}
	}
}
