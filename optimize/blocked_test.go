package optimize

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// blockedCase is a small graph and the ops (in topological order, "Op" or
// "domain::Op") it has after the CPU passes of level 3.
type blockedCase struct {
	name  string
	build func() *ir.Graph
	want  string
	bind  map[string]int
}

// conv adds a Conv of x (c channels) to m channels, kernel k, with the
// given attributes (pads of k/2 unless attrs set pads).
func conv(b *ir.Builder, r *rand.Rand, x *ir.Value, c, m, k, group int, attrs ...*ir.Attr) *ir.Value {
	p := int64(k / 2)
	attrs = append([]*ir.Attr{ir.IntsAttr("pads", p, p, p, p), ir.IntAttr("group", int64(group))}, attrs...)
	return b.Op("Conv", []*ir.Value{x, b.Const("", unitWeights(r, m, c/group, k)), b.Const("", f32(r, m))}, attrs...)
}

// unitWeights returns conv weights [m, cg, k, k] scaled so that unit-scale
// inputs give unit-scale outputs (the comparisons' tolerances are for
// such data).
func unitWeights(r *rand.Rand, m, cg, k int) *tensor.Tensor {
	w := f32(r, m, cg, k, k)
	s := float32(1 / math.Sqrt(float64(2*cg*k*k)))
	for i := range w.Float32s() {
		w.Float32s()[i] *= s
	}
	return w
}

func relu(b *ir.Builder, x *ir.Value) *ir.Value { return b.Op("Relu", []*ir.Value{x}) }

// blockedGraph starts a graph with input x [1, c, h, w] (h and w symbolic
// when sym).
func blockedGraph(c int, sym bool) (*ir.Builder, *rand.Rand, *ir.Value) {
	b := ir.NewBuilder("g", 17)
	h, w := ir.D(9), ir.D(7)
	if sym {
		h, w = ir.S("h"), ir.S("w")
	}
	return b, rand.New(rand.NewPCG(uint64(c), 3)), b.Input("x", tensor.Float32, ir.D(1), ir.D(int64(c)), h, w)
}

func blockedCases() []blockedCase {
	return []blockedCase{
		{name: "chain with residual", bind: map[string]int{"h": 9, "w": 11},
			want: "kiln::BlockedConv kiln::BlockedConv kiln::BlockedConv Add Relu kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, true)
				y := relu(b, conv(b, r, x, 3, 16, 3, 1))
				z := relu(b, conv(b, r, y, 16, 16, 3, 1))
				z = conv(b, r, z, 16, 16, 1, 1)
				b.Output(relu(b, b.Op("Add", []*ir.Value{z, y})), "y")
				return b.Graph()
			}},
		{name: "stride and dilation, 24 channels", want: "kiln::ToBlocked kiln::BlockedConv kiln::BlockedConv kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(20, false)
				y := relu(b, conv(b, r, x, 20, 24, 3, 1, ir.IntsAttr("strides", 2, 2)))
				y = conv(b, r, y, 24, 24, 3, 1, ir.IntsAttr("dilations", 2, 2), ir.IntsAttr("pads", 2, 2, 2, 2))
				b.Output(y, "y")
				return b.Graph()
			}},
		{name: "flatten is a boundary", want: "kiln::BlockedConv kiln::BlockedConv kiln::FromBlocked Flatten",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, false)
				y := relu(b, conv(b, r, x, 3, 16, 3, 1))
				y = conv(b, r, y, 16, 24, 3, 1)
				b.Output(b.Op("Flatten", []*ir.Value{y}), "y")
				return b.Graph()
			}},
		{name: "concat 64+64", want: "kiln::ToBlocked kiln::BlockedConv kiln::BlockedConv Concat kiln::BlockedConv kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(32, false)
				e1 := relu(b, conv(b, r, x, 32, 64, 1, 1))
				e3 := relu(b, conv(b, r, x, 32, 64, 3, 1))
				y := b.Op("Concat", []*ir.Value{e1, e3}, ir.IntAttr("axis", 1))
				b.Output(conv(b, r, y, 128, 16, 1, 1), "y")
				return b.Graph()
			}},
		{name: "concat 24+40 is a boundary", want: "kiln::ToBlocked kiln::BlockedConv kiln::BlockedConv kiln::FromBlocked kiln::FromBlocked Concat kiln::ToBlocked kiln::BlockedConv kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(32, false)
				e1 := relu(b, conv(b, r, x, 32, 24, 1, 1))
				e3 := relu(b, conv(b, r, x, 32, 40, 3, 1))
				y := b.Op("Concat", []*ir.Value{e1, e3}, ir.IntAttr("axis", -3))
				b.Output(conv(b, r, y, 64, 16, 1, 1), "y")
				return b.Graph()
			}},
		{name: "pools", bind: map[string]int{"h": 13, "w": 10},
			want: "kiln::BlockedConv kiln::BlockedMaxPool kiln::BlockedConv kiln::BlockedAveragePool kiln::BlockedConv kiln::BlockedGlobalAveragePool kiln::BlockedGlobalMaxPool kiln::FromBlocked Flatten kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, true)
				y := relu(b, conv(b, r, x, 3, 24, 3, 1))
				y = b.Op("MaxPool", []*ir.Value{y}, ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("strides", 2, 2), ir.IntAttr("ceil_mode", 1))
				y = relu(b, conv(b, r, y, 24, 20, 3, 1))
				y = b.Op("AveragePool", []*ir.Value{y}, ir.IntsAttr("kernel_shape", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1))
				y = relu(b, conv(b, r, y, 20, 40, 1, 1))
				g1 := b.Op("GlobalAveragePool", []*ir.Value{y})
				g2 := b.Op("GlobalMaxPool", []*ir.Value{y})
				b.Output(b.Op("Flatten", []*ir.Value{g1}), "avg")
				b.Output(g2, "max")
				return b.Graph()
			}},
		{name: "graph output read by a conv", want: "kiln::BlockedConv kiln::BlockedConv kiln::FromBlocked kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, false)
				y := relu(b, conv(b, r, x, 3, 16, 3, 1))
				z := conv(b, r, y, 16, 16, 3, 1)
				b.Output(y, "y")
				b.Output(z, "z")
				return b.Graph()
			}},
		{name: "depthwise", want: "kiln::ToBlocked kiln::BlockedConv kiln::BlockedConv kiln::BlockedConv kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(16, false)
				y := relu(b, conv(b, r, x, 16, 40, 1, 1))
				y = b.Op("Clip", []*ir.Value{conv(b, r, y, 40, 40, 3, 40), b.Const("", tensor.Scalar(tensor.Float32, 0)), b.Const("", tensor.Scalar(tensor.Float32, 6))})
				b.Output(b.Op("Add", []*ir.Value{conv(b, r, y, 40, 16, 1, 1), x}), "y")
				return b.Graph()
			}},
		{name: "grouped conv left alone", want: "kiln::BlockedConv kiln::FromBlocked kiln::FusedConv kiln::ToBlocked kiln::BlockedConv kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, false)
				y := relu(b, conv(b, r, x, 3, 32, 3, 1))
				y = relu(b, conv(b, r, y, 32, 32, 3, 2))
				b.Output(conv(b, r, y, 32, 16, 1, 1), "y")
				return b.Graph()
			}},
		{name: "sigmoid of 24 channels is a boundary, relu and tanh are not", want: "kiln::BlockedConv kiln::FromBlocked Sigmoid Relu Tanh kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, false)
				y := conv(b, r, x, 3, 24, 3, 1)
				b.Output(b.Op("Sigmoid", []*ir.Value{y}), "s")
				b.Output(b.Op("Tanh", []*ir.Value{relu(b, y)}), "t")
				return b.Graph()
			}},
		{name: "sigmoid of 32 channels", want: "kiln::BlockedConv Sigmoid Relu Mul kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, false)
				y := conv(b, r, x, 3, 32, 3, 1)
				b.Output(b.Op("Mul", []*ir.Value{b.Op("Sigmoid", []*ir.Value{y}), relu(b, y)}), "y")
				return b.Graph()
			}},
		{name: "scalar constants", want: "kiln::BlockedConv Mul kiln::FromBlocked Add kiln::FromBlocked Add",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, false)
				y := conv(b, r, x, 3, 24, 3, 1)
				m := b.Op("Mul", []*ir.Value{y, b.Const("", tensor.Scalar(tensor.Float32, 0.5))})
				a := b.Op("Add", []*ir.Value{y, b.Const("", tensor.FromFloat32([]float32{1}, 1, 1, 1, 1))})
				b.Output(b.Op("Add", []*ir.Value{m, a}), "y")
				return b.Graph()
			}},
		{name: "slices of whole blocks (C2f)", want: "kiln::BlockedConv Slice Slice kiln::BlockedConv Add Concat kiln::BlockedConv kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, false)
				y := relu(b, conv(b, r, x, 3, 64, 3, 1))
				i64 := func(v ...int64) *ir.Value { return b.Const("", tensor.FromInt64(v, len(v))) }
				lo := b.Op("Slice", []*ir.Value{y, i64(0), i64(32), i64(1)})
				hi := b.Op("Slice", []*ir.Value{y, i64(32), i64(1 << 62), i64(-3), i64(1)})
				m := b.Op("Add", []*ir.Value{relu(b, conv(b, r, hi, 32, 32, 3, 1)), hi})
				b.Output(conv(b, r, b.Op("Concat", []*ir.Value{lo, m}, ir.IntAttr("axis", 1)), 64, 24, 1, 1), "y")
				return b.Graph()
			}},
		{name: "slice to the end of 40 channels, slice of 24", want: "kiln::BlockedConv Slice kiln::FromBlocked Slice kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, false)
				y := conv(b, r, x, 3, 40, 3, 1)
				i64 := func(v ...int64) *ir.Value { return b.Const("", tensor.FromInt64(v, len(v))) }
				b.Output(b.Op("Slice", []*ir.Value{y, i64(16), i64(40), i64(1)}), "end")
				b.Output(b.Op("Slice", []*ir.Value{y, i64(0), i64(24), i64(1)}), "part")
				b.Output(y, "y")
				return b.Graph()
			}},
		{name: "nearest resize", bind: map[string]int{"h": 5, "w": 6},
			want: "kiln::BlockedConv Resize Resize kiln::FromBlocked Resize kiln::FromBlocked kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, true)
				y := conv(b, r, x, 3, 24, 3, 1)
				empty := b.Const("", tensor.New(tensor.Float32, 0))
				up := b.Op("Resize", []*ir.Value{y, empty, b.Const("", tensor.FromFloat32([]float32{1, 1, 2, 3}, 4))}, ir.StringAttr("mode", "nearest"))
				b.Output(up, "up")
				b.Output(b.Op("Resize", []*ir.Value{y, nil, nil, b.Const("", tensor.FromInt64([]int64{1, 24, 7, 4}, 4))}, ir.StringAttr("mode", "nearest"), ir.StringAttr("coordinate_transformation_mode", "asymmetric"), ir.StringAttr("nearest_mode", "ceil")), "sized")
				b.Output(b.Op("Resize", []*ir.Value{y, nil, b.Const("", tensor.FromFloat32([]float32{1, 1, 2, 2}, 4))}, ir.StringAttr("mode", "linear")), "linear")
				return b.Graph()
			}},
		{name: "squeeze-excite: a [N, C, 1, 1] operand broadcast over H and W", bind: map[string]int{"h": 6, "w": 5},
			want: "kiln::BlockedConv kiln::BlockedGlobalAveragePool kiln::BlockedConv kiln::BlockedConv Mul kiln::FromBlocked",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, true)
				y := relu(b, conv(b, r, x, 3, 32, 3, 1))
				s := b.Op("GlobalAveragePool", []*ir.Value{y})
				s = b.Op("Sigmoid", []*ir.Value{conv(b, r, relu(b, conv(b, r, s, 32, 16, 1, 1)), 16, 32, 1, 1)})
				b.Output(b.Op("Mul", []*ir.Value{y, s}), "y")
				return b.Graph()
			}},
		{name: "tensor of another shape is a boundary", want: "kiln::BlockedConv kiln::FromBlocked Add",
			build: func() *ir.Graph {
				b, r, x := blockedGraph(3, false)
				y := conv(b, r, x, 3, 16, 3, 1)
				b.Output(b.Op("Add", []*ir.Value{y, b.Const("", f32(r, 16, 1, 1))}), "y")
				return b.Graph()
			}},
	}
}

// opSequence lists g's ops in node order.
func opSequence(g *ir.Graph) string {
	var s []string
	for _, n := range g.Nodes {
		k := n.OpType
		if n.Domain != "" && n.Domain != "ai.onnx" {
			k = n.Domain + "::" + k
		}
		s = append(s, k)
	}
	return strings.Join(s, " ")
}

// checkBlockedTypes checks that every value a blocked op reads or writes
// has a rank-5 type [N, Cb, H, W, 16] and every FromBlocked output rank 4.
func checkBlockedTypes(t *testing.T, g *ir.Graph) {
	t.Helper()
	for _, n := range g.Nodes {
		var vs []*ir.Value
		switch {
		case n.OpType == "FromBlocked":
			vs = n.Inputs[:1]
			if len(n.Outputs[0].Type.Shape) != 4 {
				t.Errorf("%s: output %v", n, n.Outputs[0].Type)
			}
		case n.OpType == "ToBlocked", strings.HasPrefix(n.OpType, "Blocked") && n.OpType != "BlockedConv":
			vs = n.Outputs
		case n.OpType == "BlockedConv":
			vs = n.Outputs
			if a, ok := n.Attrs["input_nchw"]; !ok || a.I != 1 {
				vs = append(vs, n.Inputs[0])
			}
		}
		for _, v := range vs {
			s := v.Type.Shape
			if v.Type.DType != tensor.Float32 || len(s) != 5 || !s[1].Known() || !s[4].Equal(ir.D(16)) {
				t.Errorf("%s: %v is not blocked", n, v)
			}
		}
	}
}

func TestBlocked(t *testing.T) {
	passes := PassesFor(3, "cpu")
	for _, tc := range blockedCases() {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.build()
			in := randInputsBound(t, ref, 1, tc.bind)
			want := runGraph(t, ref, in)
			g := tc.build()
			var logs []string
			if err := RunPasses(g, passes, func(pass, msg string) { logs = append(logs, pass+": "+msg) }); err != nil {
				t.Fatal(err)
			}
			if got := opSequence(g); got != tc.want {
				t.Errorf("ops %q\nwant %q\nlog %q", got, tc.want, logs)
			}
			checkBlockedTypes(t, g)
			if tc.bind != nil {
				// symbolic H and W stay symbolic
				for _, n := range g.Nodes {
					if n.OpType == "BlockedConv" && !n.Inputs[0].Type.Shape[2].Known() && n.Outputs[0].Type.Shape[2].Known() {
						t.Errorf("%s: %v lost its symbolic height", n, n.Outputs[0])
					}
				}
			}
			// idempotent: a second run of the pass changes nothing
			before := opSequence(g)
			if c, err := (blockedPass{}).Apply(g); err != nil || c || opSequence(g) != before {
				t.Errorf("second run: changed %v, err %v, ops %q", c, err, opSequence(g))
			}
			got := runGraph(t, g, in)
			for _, v := range ref.Outputs {
				if c := compare(got[v.Name], want[v.Name], 1e-4, 1e-5); !c.OK {
					t.Errorf("output %q: %s", v.Name, c.Reason)
				}
			}
		})
	}
}

// TestBlockedInSubgraph checks the pass inside both branches of an If
// whose convolutions read a captured tensor.
func TestBlockedInSubgraph(t *testing.T) {
	build := func() *ir.Graph {
		b, r, x := blockedGraph(16, false)
		c := b.Input("c", tensor.Float32, ir.D(1))
		branch := func(name string, m int) *ir.Graph {
			sb := ir.NewBuilder("branch_"+name, 17)
			sg := sb.Graph()
			sg.Parent = b.Graph()
			y := relu(sb, conv(sb, r, sg.Capture(x), 16, m, 3, 1))
			sb.Output(conv(sb, r, y, m, 16, 1, 1), "")
			return sg
		}
		cond := b.Op("Squeeze", []*ir.Value{b.Op("Greater", []*ir.Value{c, b.Const("zero", tensor.FromFloat32([]float32{0}, 1))})})
		b.Output(b.Op("If", []*ir.Value{cond}, ir.GraphAttr("then_branch", branch("a", 32)), ir.GraphAttr("else_branch", branch("b", 24))), "y")
		return b.Graph()
	}
	ref, g := build(), build()
	if err := RunFor(g, 3, "cpu", nil); err != nil {
		t.Fatal(err)
	}
	branches := 0
	for _, n := range g.Nodes {
		for _, sg := range n.Subgraphs() {
			branches++
			if got, want := opSequence(sg), "kiln::ToBlocked kiln::BlockedConv kiln::BlockedConv kiln::FromBlocked"; got != want {
				t.Errorf("branch %s: ops %q, want %q", sg.Name, got, want)
			}
			checkBlockedTypes(t, sg)
		}
	}
	if branches != 2 {
		t.Fatalf("%d branches", branches)
	}
	r := rand.New(rand.NewPCG(15, 15))
	for _, cv := range []float32{1, -1} {
		in := map[string]*tensor.Tensor{"x": randF32(r, 1, 16, 9, 7), "c": tensor.FromFloat32([]float32{cv}, 1)}
		if c := compare(runGraph(t, g, in)["y"], runGraph(t, ref, in)["y"], 1e-4, 1e-5); !c.OK {
			t.Errorf("c=%v: %s", cv, c.Reason)
		}
	}
}

// TestBlockedLeavesAlone checks the FusedConvs the pass must not convert:
// attributes that do not parse, a weight that is not a constant, a 1-D
// convolution. The graphs are typed by hand (inference would refuse the
// bad attributes) and the pass applied alone.
func TestBlockedLeavesAlone(t *testing.T) {
	tests := []struct {
		name string
		edit func(b *ir.Builder, n *ir.Node)
	}{
		{"bad activation", func(b *ir.Builder, n *ir.Node) { n.Attrs["activation"] = ir.StringAttr("activation", "Bogus") }},
		{"empty clip range", func(b *ir.Builder, n *ir.Node) {
			n.Attrs["activation"] = ir.StringAttr("activation", "Clip")
			n.Attrs["activation_params"] = &ir.Attr{Name: "activation_params", Type: ir.AttrFloats, Floats: []float32{6, 0}}
		}},
		{"group 0", func(b *ir.Builder, n *ir.Node) { n.Attrs["group"] = ir.IntAttr("group", 0) }},
		{"grouped, not depthwise", func(b *ir.Builder, n *ir.Node) {
			n.Attrs["group"] = ir.IntAttr("group", 2)
			n.Inputs[1] = b.Const("w2", f32(rand.New(rand.NewPCG(1, 1)), 32, 8, 3, 3))
		}},
		{"weight not constant", func(b *ir.Builder, n *ir.Node) {
			n.Inputs[1] = b.Input("w_in", tensor.Float32, ir.D(32), ir.D(16), ir.D(3), ir.D(3))
		}},
		{"3-D window", func(b *ir.Builder, n *ir.Node) { n.Attrs["kernel_shape"] = ir.IntsAttr("kernel_shape", 3, 3, 3) }},
		{"8 output channels (narrow)", func(b *ir.Builder, n *ir.Node) {
			n.Inputs[1] = b.Const("w8", f32(rand.New(rand.NewPCG(1, 3)), 8, 16, 3, 3))
		}},
		{"8 input channels, not an image (narrow)", func(b *ir.Builder, n *ir.Node) {
			n.Inputs[0] = b.Input("x8", tensor.Float32, ir.D(1), ir.D(8), ir.D(8), ir.D(8))
			n.Inputs[1] = b.Const("w8", f32(rand.New(rand.NewPCG(1, 4)), 32, 8, 3, 3))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ir.NewBuilder("g", 17)
			x := b.Input("x", tensor.Float32, ir.D(1), ir.D(16), ir.D(8), ir.D(8))
			y := b.Op("FusedConv", []*ir.Value{x, b.Const("w", f32(rand.New(rand.NewPCG(1, 2)), 32, 16, 3, 3))}, ir.IntsAttr("pads", 1, 1, 1, 1))
			y.Type = ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(1, 32, 8, 8)}
			b.Output(y, "y")
			g := b.Graph()
			n := g.Nodes[0]
			n.Domain = fusedDomain
			tt.edit(b, n)
			inputs := slices.Clone(n.Inputs)
			c, err := (blockedPass{}).Apply(g)
			if err != nil || c {
				t.Fatalf("changed %v, err %v: ops %q", c, err, opSequence(g))
			}
			if n.OpType != "FusedConv" || !slices.Equal(n.Inputs, inputs) || n.Outputs[0] != y {
				t.Errorf("node changed: %v", n)
			}
		})
	}
}

// TestBlockedFusesPending checks that the pass, run alone, first fuses into
// a FusedConv the residual Add and activation convfuse would, so that a
// conversion never comes before a fusion of a later round.
func TestBlockedFusesPending(t *testing.T) {
	build := func() *ir.Graph {
		b, r, x := blockedGraph(16, false)
		y := conv(b, r, x, 16, 16, 3, 1)
		b.Output(relu(b, b.Op("Add", []*ir.Value{y, x})), "y")
		g := b.Graph()
		g.Nodes[0].OpType, g.Nodes[0].Domain = "FusedConv", fusedDomain
		g.Opsets[fusedDomain] = 1
		return g
	}
	ref, g := build(), build()
	if err := RunPasses(g, lookupAll(t, []string{"blocked"}), nil); err != nil {
		t.Fatal(err)
	}
	if got, want := opSequence(g), "kiln::ToBlocked kiln::BlockedConv kiln::FromBlocked"; got != want {
		t.Fatalf("ops %q, want %q", got, want)
	}
	n := g.Nodes[1]
	if a := n.Attrs["activation"]; a == nil || a.S != "Relu" || n.Input(3) == nil || n.Input(3) != n.Inputs[0] {
		t.Errorf("BlockedConv %v: want the Relu and the residual fused, reading the one ToBlocked", n)
	}
	in := randInputs(t, ref, 2)
	if c := compare(runGraph(t, g, in)["y"], runGraph(t, ref, in)["y"], 1e-4, 1e-5); !c.OK {
		t.Error(c.Reason)
	}
}
