package optimize

import (
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// nhwcNet is a graph as an NHWC framework exports it: every convolution
// between Transposes, with elementwise ops (a bias Add with a per-channel
// constant, Relu, a residual Add of two transposed values, a scalar Mul)
// computed in NHWC between them.
func nhwcNet() *ir.Graph {
	r := rand.New(rand.NewPCG(3, 4))
	b := ir.NewBuilder("nhwc", 17)
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(6), ir.D(6), ir.D(4)) // NHWC
	toNCHW := func(v *ir.Value) *ir.Value { return b.Op("Transpose", []*ir.Value{v}, ir.IntsAttr("perm", 0, 3, 1, 2)) }
	toNHWC := func(v *ir.Value) *ir.Value { return b.Op("Transpose", []*ir.Value{v}, ir.IntsAttr("perm", 0, 2, 3, 1)) }
	conv := func(v *ir.Value) *ir.Value {
		return toNHWC(b.Op("Conv", []*ir.Value{toNCHW(v), b.Const("", f32(r, 4, 4, 3, 3))}, ir.IntsAttr("pads", 1, 1, 1, 1)))
	}
	h := conv(x)
	h = b.Op("Add", []*ir.Value{h, b.Const("", f32(r, 4))}) // bias over the last (channel) axis
	h = b.Op("Relu", []*ir.Value{h})
	h2 := conv(h)
	h = b.Op("Add", []*ir.Value{h2, h}) // residual: both NHWC
	h = b.Op("Mul", []*ir.Value{h, b.Const("", tensor.Scalar(tensor.Float32, 0.5))})
	b.Output(conv(h), "y")
	return b.Graph()
}

func TestLayout(t *testing.T) {
	runCases(t, []passCase{
		{
			name:   "NHWC network keeps NCHW inside",
			build:  nhwcNet,
			passes: []string{"layout", "transpose", "dce"},
			// One Transpose into NCHW at the input, one back at the output.
			want:  map[string]int{"Add": 2, "Conv": 3, "Mul": 1, "Relu": 1, "Transpose": 2},
			inits: -1,
		},
		{
			name: "transposes of different perms stay",
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(2), ir.D(2), ir.D(2))
				a := b.Op("Transpose", []*ir.Value{x}, ir.IntsAttr("perm", 1, 0, 2))
				c := b.Op("Transpose", []*ir.Value{x}, ir.IntsAttr("perm", 0, 2, 1))
				b.Output(b.Op("Add", []*ir.Value{a, c}), "y")
				return b.Graph()
			},
			passes: []string{"layout", "dce"},
			want:   map[string]int{"Add": 1, "Transpose": 2},
			inits:  0,
		},
		{
			name: "a transpose read twice stays",
			build: func() *ir.Graph {
				b := ir.NewBuilder("g", 17)
				x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3), ir.D(4))
				a := b.Op("Transpose", []*ir.Value{x}, ir.IntsAttr("perm", 1, 0, 2))
				b.Output(b.Op("Relu", []*ir.Value{a}), "y")
				b.Output(b.Op("Neg", []*ir.Value{a}), "z")
				return b.Graph()
			},
			passes: []string{"layout", "dce"},
			want:   map[string]int{"Neg": 1, "Relu": 1, "Transpose": 1},
			inits:  0,
		},
	})
}

// TestLayoutFusion: after the layout pass, the convolutions of the NHWC
// network fuse as in an NCHW one (level 2), with two Transposes left.
func TestLayoutFusion(t *testing.T) {
	ref := nhwcNet()
	in := randInputs(t, ref, 1)
	want := runGraph(t, ref, in)
	g := nhwcNet()
	if err := Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	ops := opCounts(g)
	if ops["Transpose"] != 2 || ops["kiln::FusedConv"] != 3 || ops["Conv"] != 0 {
		t.Errorf("after level 2: %v, want 3 FusedConv and 2 Transposes", ops)
	}
	got := runGraph(t, g, in)
	if c := compare(got["y"], want["y"], 1e-4, 1e-5); !c.OK {
		t.Errorf("output changed: %s", c.Reason)
	}
}
