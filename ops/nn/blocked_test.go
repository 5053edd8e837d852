package nn_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// The blocked (NCHWc) operators run as a user's graph runs them: kiln
// nodes in an ir.Graph run by package engine (its allocator and memory
// planner see the rank-5 tensors), compared with the NCHW operators'
// graphs on the same data.

// blockedTol is the tolerance of a blocked result against the NCHW one
// (unit-scale data, fp32 sums in another order).
const blockedTol = 1e-4

// kilnOp adds a node of kiln's domain to b.
func kilnOp(b *ir.Builder, op string, in []*ir.Value, attrs ...*ir.Attr) *ir.Value {
	v := b.Op(op, in, attrs...)
	v.Producer.Domain = "kiln"
	g := b.Graph()
	g.Opsets["kiln"] = 1
	return v
}

// randF32 is a tensor of uniform values in [-1, 1).
func blkRand(r *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Float32, shape...)
	for i := range t.Float32s() {
		t.Float32s()[i] = float32(r.Float64()*2 - 1)
	}
	return t
}

// runGraph runs g with engine on the inputs and returns its outputs in
// order.
func runGraph(t *testing.T, g *ir.Graph, in map[string]*tensor.Tensor) []*tensor.Tensor {
	t.Helper()
	e, err := engine.New(g)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	out, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	res := make([]*tensor.Tensor, len(g.Outputs))
	for i, v := range g.Outputs {
		res[i] = out[v.Name]
	}
	return res
}

// compareClose checks got against want elementwise within tol (absolute).
func compareClose(t *testing.T, name string, got, want *tensor.Tensor, tol float64) {
	t.Helper()
	if !slices.Equal(got.Shape, want.Shape) {
		t.Errorf("%s: shape %v, want %v", name, got.Shape, want.Shape)
		return
	}
	g, w := got.Float32s(), want.Float32s()
	worst, at := 0.0, -1
	for i := range w {
		d := math.Abs(float64(g[i]) - float64(w[i]))
		if math.IsNaN(d) && !(math.IsNaN(float64(g[i])) && math.IsNaN(float64(w[i]))) || math.IsInf(float64(w[i]), 0) && g[i] != w[i] {
			d = math.Inf(1)
		}
		if d > worst || math.IsInf(d, 1) {
			worst, at = d, i
		}
	}
	if worst > tol {
		t.Errorf("%s: |diff| %g at %d (got %g, want %g), tolerance %g", name, worst, at, g[at], w[at], tol)
	}
}

// checkPadLanes checks that the pad lanes (channels >= c) of a blocked
// tensor are zero.
func checkPadLanes(t *testing.T, name string, y *tensor.Tensor, c int) {
	t.Helper()
	if y.Rank() != 5 || y.Shape[4] != cpu.Block || y.Shape[1] != cpu.Blocks(c) {
		t.Errorf("%s: blocked shape %v for %d channels", name, y.Shape, c)
		return
	}
	v := y.Float32s()
	for px := 0; px < len(v)/cpu.Block; px++ {
		if (px/(y.Shape[2]*y.Shape[3]))%y.Shape[1] != y.Shape[1]-1 {
			continue
		}
		for l := c % cpu.Block; l < cpu.Block && c%cpu.Block != 0; l++ {
			if x := v[px*cpu.Block+l]; x != 0 {
				t.Errorf("%s: pad lane %d of pixel %d is %g", name, l, px, x)
				return
			}
		}
	}
}

// refActivation is each fused activation in float64.
func refActivation(act string, p []float32, x float64) float64 {
	switch act {
	case "Relu":
		return math.Max(x, 0)
	case "Clip":
		return math.Min(math.Max(x, float64(p[0])), float64(p[1]))
	case "Sigmoid":
		return 1 / (1 + math.Exp(-x))
	case "SiLU":
		return x / (1 + math.Exp(-x))
	case "HardSwish":
		return x * math.Max(0, math.Min(1, x/6+0.5))
	case "LeakyRelu":
		if x < 0 {
			return float64(p[0]) * x
		}
		return x
	case "HardSigmoid":
		return math.Max(0, math.Min(1, float64(p[0])*x+float64(p[1])))
	case "Gelu":
		return x * 0.5 * (1 + math.Erf(x/math.Sqrt2))
	case "GeluTanh":
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	return x
}

var blockedActs = []struct {
	act    string
	params []float32
}{
	{"", nil}, {"Relu", nil}, {"Clip", []float32{0, 6}}, {"Clip", []float32{0.25, 0.5}}, {"Sigmoid", nil}, {"SiLU", nil},
	{"HardSwish", nil}, {"LeakyRelu", []float32{0.1}}, {"HardSigmoid", []float32{0.2, 0.5}}, {"Gelu", nil}, {"GeluTanh", nil},
}

// blockedConvCase is one convolution's geometry.
type blockedConvCase struct {
	name       string
	n, c, h, w int
	m, kh, kw  int
	group      int
	nchw       bool // input_nchw: the blocked convolution reads X as is
	attrs      []*ir.Attr
}

var blockedConvCases = []blockedConvCase{
	{"3x3 pads 1", 1, 20, 9, 8, 24, 3, 3, 1, false, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1)}},
	{"3x3 stride 2", 2, 16, 11, 10, 17, 3, 3, 1, false, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)}},
	{"1x1", 1, 35, 7, 7, 40, 1, 1, 1, false, nil},
	{"1x1 stride 2", 2, 32, 8, 9, 48, 1, 1, 1, false, []*ir.Attr{ir.IntsAttr("strides", 2, 2)}},
	{"7x7 stride 2 NCHW input", 2, 3, 23, 21, 20, 7, 7, 1, true, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 3, 3, 3, 3)}},
	{"3x3 NCHW input", 1, 5, 6, 7, 16, 3, 3, 1, true, []*ir.Attr{ir.IntsAttr("pads", 1, 0, 1, 2)}},
	{"depthwise 3x3", 1, 40, 10, 9, 40, 3, 3, 40, false, []*ir.Attr{ir.IntsAttr("pads", 1, 1, 1, 1)}},
	{"depthwise 3x3 stride 2", 2, 24, 9, 9, 24, 3, 3, 24, false, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.IntsAttr("pads", 1, 1, 1, 1)}},
	{"depthwise 5x5 dilation 2", 1, 16, 12, 11, 16, 5, 5, 16, false, []*ir.Attr{ir.IntsAttr("dilations", 2, 2), ir.IntsAttr("pads", 4, 4, 4, 4)}},
	{"3x3 dilation 2 same_upper", 1, 13, 8, 8, 9, 3, 3, 1, false, []*ir.Attr{ir.IntsAttr("dilations", 2, 2), ir.StringAttr("auto_pad", "SAME_UPPER")}},
	{"2x2 stride 2 same_lower", 1, 18, 7, 9, 33, 2, 2, 1, false, []*ir.Attr{ir.IntsAttr("strides", 2, 2), ir.StringAttr("auto_pad", "SAME_LOWER")}},
}

// blockedConvGraph is x -> [ToBlocked] -> BlockedConv -> FromBlocked (the
// blocked Y also an output), with Z made blocked from an NCHW input.
func blockedConvGraph(tc blockedConvCase, act string, params []float32, w, bias *tensor.Tensor, residual bool, batch ir.Dim) *ir.Graph {
	b := ir.NewBuilder("blocked", 17)
	x := b.Input("x", tensor.Float32, batch, ir.D(int64(tc.c)), ir.D(int64(tc.h)), ir.D(int64(tc.w)))
	xb := x
	if !tc.nchw {
		xb = kilnOp(b, "ToBlocked", []*ir.Value{x})
	}
	in := []*ir.Value{xb, b.Const("w", w)}
	if bias != nil {
		in = append(in, b.Const("b", bias))
	} else if residual {
		in = append(in, nil)
	}
	if residual {
		z := b.Input("z", tensor.Float32, batch, ir.D(int64(tc.m)), ir.U(), ir.U())
		in = append(in, kilnOp(b, "ToBlocked", []*ir.Value{z}))
	}
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
	y := kilnOp(b, "FromBlocked", []*ir.Value{yb}, ir.IntAttr("channels", int64(tc.m)))
	b.Output(y, "y")
	b.Output(yb, "yb")
	return b.Graph()
}

// fusedConvGraph is the same convolution in NCHW: kiln::FusedConv.
func fusedConvGraph(tc blockedConvCase, act string, params []float32, w, bias *tensor.Tensor, residual bool) *ir.Graph {
	b := ir.NewBuilder("fused", 17)
	x := b.Input("x", tensor.Float32, ir.D(int64(tc.n)), ir.D(int64(tc.c)), ir.D(int64(tc.h)), ir.D(int64(tc.w)))
	in := []*ir.Value{x, b.Const("w", w)}
	if bias != nil {
		in = append(in, b.Const("b", bias))
	} else if residual {
		in = append(in, nil)
	}
	if residual {
		in = append(in, b.Input("z", tensor.Float32, ir.D(int64(tc.n)), ir.D(int64(tc.m)), ir.U(), ir.U()))
	}
	attrs := append(slices.Clone(tc.attrs), ir.IntAttr("group", int64(tc.group)))
	if act != "" {
		attrs = append(attrs, ir.StringAttr("activation", act))
	}
	if params != nil {
		attrs = append(attrs, &ir.Attr{Name: "activation_params", Type: ir.AttrFloats, Floats: params})
	}
	b.Output(kilnOp(b, "FusedConv", in, attrs...), "y")
	return b.Graph()
}

// onnxConv is ONNX Conv of x (bias b, nil for none).
func onnxConv(t *testing.T, tc blockedConvCase, x, w, bias *tensor.Tensor) *tensor.Tensor {
	t.Helper()
	b := ir.NewBuilder("conv", 17)
	xv := b.Input("x", tensor.Float32, ir.KnownShape(x.Shape...)...)
	in := []*ir.Value{xv, b.Const("w", w)}
	if bias != nil {
		in = append(in, b.Const("b", bias))
	}
	attrs := append(slices.Clone(tc.attrs), ir.IntAttr("group", int64(tc.group)))
	b.Output(b.Op("Conv", in, attrs...), "y")
	return runGraph(t, b.Graph(), map[string]*tensor.Tensor{"x": x})[0]
}

// TestBlockedConv: ToBlocked -> BlockedConv -> FromBlocked equals
// kiln::FusedConv, and ONNX Conv + Z + the activation in float64, for
// each geometry, activation, with and without bias and residual; the
// blocked output's pad lanes are zero.
func TestBlockedConv(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 1))
	for _, tc := range blockedConvCases {
		x := blkRand(r, tc.n, tc.c, tc.h, tc.w)
		w := blkRand(r, tc.m, tc.c/tc.group, tc.kh, tc.kw)
		bias := blkRand(r, tc.m)
		plain := onnxConv(t, tc, x, w, nil)
		withBias := onnxConv(t, tc, x, w, bias)
		z := blkRand(r, plain.Shape...)
		for _, a := range blockedActs {
			for _, hasBias := range []bool{false, true} {
				for _, residual := range []bool{false, true} {
					name := fmt.Sprintf("%s act %q%v bias %v residual %v", tc.name, a.act, a.params, hasBias, residual)
					var bt *tensor.Tensor
					conv := plain
					if hasBias {
						bt, conv = bias, withBias
					}
					in := map[string]*tensor.Tensor{"x": x}
					if residual {
						in["z"] = z
					}
					batch := ir.D(int64(tc.n))
					if residual {
						batch = ir.S("batch") // symbolic N through every op
					}
					got := runGraph(t, blockedConvGraph(tc, a.act, a.params, w, bt, residual, batch), in)
					want := runGraph(t, fusedConvGraph(tc, a.act, a.params, w, bt, residual), in)[0]
					compareClose(t, name+" vs FusedConv", got[0], want, blockedTol)
					checkPadLanes(t, name, got[1], tc.m)
					// ONNX Conv, then Z and the activation in float64
					ref := tensor.New(tensor.Float32, conv.Shape...)
					for i, v := range conv.Float32s() {
						s := float64(v)
						if residual {
							s += float64(z.Float32s()[i])
						}
						ref.Float32s()[i] = float32(refActivation(a.act, a.params, s))
					}
					compareClose(t, name+" vs Conv", got[0], ref, blockedTol)
				}
			}
		}
	}
}

// TestBlockedConvRuntimeWeights: weights that are a graph input, not a
// constant, are packed for each run (dense and depthwise), as the input
// shape changes.
func TestBlockedConvRuntimeWeights(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 8))
	for _, tc := range []blockedConvCase{blockedConvCases[0], blockedConvCases[6]} {
		b := ir.NewBuilder("wruntime", 17)
		x := b.Input("x", tensor.Float32, ir.S("n"), ir.D(int64(tc.c)), ir.S("h"), ir.S("w"))
		w := b.Input("w", tensor.Float32, ir.D(int64(tc.m)), ir.D(int64(tc.c/tc.group)), ir.D(int64(tc.kh)), ir.D(int64(tc.kw)))
		attrs := append(slices.Clone(tc.attrs), ir.IntAttr("group", int64(tc.group)), ir.StringAttr("activation", "Relu"))
		yb := kilnOp(b, "BlockedConv", []*ir.Value{kilnOp(b, "ToBlocked", []*ir.Value{x}), w}, attrs...)
		b.Output(kilnOp(b, "FromBlocked", []*ir.Value{yb}, ir.IntAttr("channels", int64(tc.m))), "y")
		e, err := engine.New(b.Graph())
		if err != nil {
			t.Fatal(err)
		}
		for _, sz := range [][3]int{{1, tc.h, tc.w}, {2, tc.h + 3, tc.w + 1}} {
			xt := blkRand(r, sz[0], tc.c, sz[1], sz[2])
			wt := blkRand(r, tc.m, tc.c/tc.group, tc.kh, tc.kw)
			got, err := e.Run(context.Background(), map[string]*tensor.Tensor{"x": xt, "w": wt})
			if err != nil {
				t.Fatalf("%s %v: %v", tc.name, sz, err)
			}
			ref := onnxConv(t, tc, xt, wt, nil)
			for i, v := range ref.Float32s() {
				ref.Float32s()[i] = max(v, 0)
			}
			compareClose(t, fmt.Sprintf("%s %v", tc.name, sz), got["y"], ref, blockedTol)
		}
	}
}
