package nn_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/tensor"
)

// TestBlockedConvResidualInPlace: with static shapes, the memory planner
// puts a BlockedConv's Y in the slot of its residual Z (a ToBlocked whose
// last reader is the convolution), so that the kernel adds Z in place; the
// outputs equal those of an engine without arena (each value in memory of
// its own), for each geometry (dense, depthwise, NCHW input) and a few
// activations. FusedConv does not declare the trait: its fallback path
// writes the convolution to y before it reads z.
func TestBlockedConvResidualInPlace(t *testing.T) {
	if !ops.TraitsOf(nn.FusedDomain, "BlockedConv").Has(ops.OverwritesResidual) || ops.TraitsOf(nn.FusedDomain, "FusedConv").Has(ops.OverwritesResidual) {
		t.Fatalf("traits: BlockedConv %b, FusedConv %b", ops.TraitsOf(nn.FusedDomain, "BlockedConv"), ops.TraitsOf(nn.FusedDomain, "FusedConv"))
	}
	r := rand.New(rand.NewPCG(15, 13))
	for _, tc := range blockedConvCases {
		x := blkRand(r, tc.n, tc.c, tc.h, tc.w)
		w := blkRand(r, tc.m, tc.c/tc.group, tc.kh, tc.kw)
		bias := blkRand(r, tc.m)
		z := blkRand(r, onnxConv(t, tc, x, w, nil).Shape...)
		for _, a := range []struct {
			act    string
			params []float32
		}{{"", nil}, {"Relu", nil}, {"SiLU", nil}} {
			name := fmt.Sprintf("%s act %q", tc.name, a.act)
			g := blockedResidualGraph(tc, a.act, a.params, w, bias, z.Shape)
			e, err := engine.New(g)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ref, err := engine.NewWithOptions(g, engine.Options{NoArena: true})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if m := e.Memory(); m.InPlace != 1 {
				t.Fatalf("%s: memory %+v: want Y over Z (InPlace 1)", name, m)
			}
			in := map[string]*tensor.Tensor{"x": x, "z": z}
			want, err := ref.Run(context.Background(), in)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			// where Z and Y lie: the kernel ran with the two over the same memory
			var conv *ir.Node
			for _, n := range g.Nodes {
				if n.OpType == "BlockedConv" {
					conv = n
				}
			}
			at := map[*ir.Value]*float32{}
			observe := func(v *ir.Value, t *tensor.Tensor) {
				if (v == conv.Inputs[ops.ResidualInput] || v == conv.Outputs[0]) && t.Len() > 0 {
					at[v] = &t.Float32s()[0]
				}
			}
			for run := 0; run < 2; run++ {
				clear(at)
				got, err := e.RunObserved(context.Background(), in, observe)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if zp, yp := at[conv.Inputs[ops.ResidualInput]], at[conv.Outputs[0]]; zp == nil || zp != yp {
					t.Fatalf("%s: Z at %p, Y at %p: want the same memory", name, zp, yp)
				}
				if !slices.Equal(got["y"].Float32s(), want["y"].Float32s()) {
					compareClose(t, name+" in place vs separate", got["y"], want["y"], 0)
				}
			}
		}
	}
}

// blockedResidualGraph is y = FromBlocked(BlockedConv(x', W, B,
// ToBlocked(z))) at static shapes: Y and Z are intermediates, Z read last
// by the convolution.
func blockedResidualGraph(tc blockedConvCase, act string, params []float32, w, bias *tensor.Tensor, zshape []int) *ir.Graph {
	b := ir.NewBuilder("blocked residual", 17)
	x := b.Input("x", tensor.Float32, ir.D(int64(tc.n)), ir.D(int64(tc.c)), ir.D(int64(tc.h)), ir.D(int64(tc.w)))
	xb := x
	if !tc.nchw {
		xb = kilnOp(b, "ToBlocked", []*ir.Value{x})
	}
	zv := b.Input("z", tensor.Float32, ir.KnownShape(zshape...)...)
	in := []*ir.Value{xb, b.Const("w", w), b.Const("b", bias), kilnOp(b, "ToBlocked", []*ir.Value{zv})}
	attrs := append(slices.Clone(tc.attrs), ir.IntAttr("group", int64(tc.group)))
	if tc.nchw {
		attrs = append(attrs, ir.IntAttr("input_nchw", 1))
	}
	if act != "" {
		attrs = append(attrs, ir.StringAttr("activation", act))
	}
	if params != nil {
		attrs = append(attrs, &ir.Attr{Name: "activation_params", Type: ir.AttrFloats, Floats: params})
	}
	yb := kilnOp(b, "BlockedConv", in, attrs...)
	b.Output(kilnOp(b, "FromBlocked", []*ir.Value{yb}, ir.IntAttr("channels", int64(tc.m))), "y")
	return b.Graph()
}
