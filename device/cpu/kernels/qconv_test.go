package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// qcNode is a kiln::QConv node whose inputs are typed as in (nil: absent).
func qcNode(in []*tensor.Tensor, xs float32, act string, params []float32, attrs ...*ir.Attr) *ir.Node {
	n := fusedNode("QConv", len(in), act, params, attrs...)
	n.Attrs["x_scale"] = opstest.Float("x_scale", xs)
	for i, t := range in {
		if t == nil {
			n.Inputs[i] = nil
			continue
		}
		n.Inputs[i].Type = ops.TypeOf(t)
	}
	return n
}

// qcRef is QConv in float64 from the formula: X quantized as
// clamp(RoundToEven(x/x_scale), -127, 127), ONNX Conv in float64 of the
// integers (exact), the epilogue from the float32 combined scales.
func qcRef(t *testing.T, x, w, ws, b, z *tensor.Tensor, xs float32, act string, params []float32, attrs []*ir.Attr) ([]float64, []int) {
	t.Helper()
	xq := tensor.New(tensor.Float64, x.Shape...)
	for i, v := range x.Float32s() {
		xq.Float64s()[i] = math.Max(-127, math.Min(127, math.RoundToEven(float64(v/xs))))
	}
	wf := tensor.New(tensor.Float64, w.Shape...)
	for i, v := range w.Int8s() {
		wf.Float64s()[i] = float64(v)
	}
	out, err := opstest.Exec(opstest.Node("Conv", 2, 1, attrs...), 13, xq, wf)
	if err != nil {
		t.Fatal(err)
	}
	acc := out[0]
	m := acc.Shape[1]
	inner := acc.Len() / max(1, acc.Shape[0]*m)
	want := make([]float64, acc.Len())
	for i, a := range acc.Float64s() {
		ch := (i / max(1, inner)) % m
		v := a * float64(xs*ws.Float32s()[ch])
		if b != nil {
			v += float64(b.Float32s()[ch])
		}
		if z != nil {
			v += float64(z.Float32s()[i])
		}
		y := []float32{float32(v)}
		ops.EpilogueAttrs{Activation: act, P0: pOf(params, 0), P1: pOf(params, 1)}.ApplySerial(y)
		want[i] = float64(y[0])
	}
	return want, acc.Shape
}

// qcCheck prepares a QConv node of in with the registry (cpu.QConv) and
// the reference, runs the fast kernel twice (the second run reads the
// packed weights) and the reference into garbage outputs, and compares
// both with the formula: within 1e-5 of the magnitudes involved.
func qcCheck(t *testing.T, name string, in []*tensor.Tensor, xs float32, act string, params []float32, attrs []*ir.Attr) {
	t.Helper()
	var b, z *tensor.Tensor
	if len(in) > 3 {
		b = in[3]
	}
	if len(in) > 4 {
		z = in[4]
	}
	want, shape := qcRef(t, in[0], in[1], in[2], b, z, xs, act, params, attrs)
	n := qcNode(in, xs, act, params, attrs...)
	k, impl, err := Prepare(n, 13)
	if err != nil || impl != "cpu.QConv" {
		t.Fatalf("%s: Prepare = %q, %v", name, impl, err)
	}
	ref, err := ops.Prepare(n, 13)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := ref.Run(garbageEnv(), in)
	if err != nil {
		t.Fatalf("%s reference: %v", name, err)
	}
	for run := range 2 {
		got, err := k.Run(garbageEnv(), in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fmt.Sprint(got[0].Shape) != fmt.Sprint(shape) || fmt.Sprint(rw[0].Shape) != fmt.Sprint(shape) {
			t.Fatalf("%s: shape %v, reference %v, want %v", name, got[0].Shape, rw[0].Shape, shape)
		}
		for i, wv := range want {
			g, rv := float64(got[0].Float32s()[i]), float64(rw[0].Float32s()[i])
			mag := math.Abs(wv) + 1
			if z != nil {
				mag += math.Abs(float64(z.Float32s()[i]))
			}
			if math.IsNaN(g) || math.Abs(g-wv) > 1e-5*mag || math.Abs(rv-wv) > 1e-5*mag {
				t.Fatalf("%s run %d: y[%d] = %g, reference %g, formula %g", name, run, i, g, rv, wv)
			}
		}
	}
}

// forEachInt8Kernel runs f with each int8 kernel of this CPU in use.
func forEachInt8Kernel(t *testing.T, f func(t *testing.T)) {
	names := cpu.Int8KernelNames()
	defer cpu.SetInt8Kernel(names[0])
	for _, name := range names {
		if err := cpu.SetInt8Kernel(name); err != nil {
			t.Fatal(err)
		}
		t.Run(name, f)
	}
}

var qconvGeoms = []struct {
	name  string
	x, w  []int
	attrs []*ir.Attr
}{
	{"3x3 pad1", []int{2, 5, 7, 6}, []int{7, 5, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1)}},
	{"1x1", []int{1, 8, 5, 5}, []int{13, 8, 1, 1}, nil},
	{"1x1 stride2", []int{1, 6, 7, 7}, []int{9, 6, 1, 1}, []*ir.Attr{opstest.Ints("strides", 2, 2)}},
	{"depthwise stride2", []int{1, 6, 9, 9}, []int{6, 1, 3, 3}, []*ir.Attr{opstest.Int("group", 6), opstest.Ints("strides", 2, 2), opstest.Ints("pads", 1, 1, 1, 1)}},
	{"depthwise multiplier 2", []int{2, 4, 6, 5}, []int{8, 1, 3, 3}, []*ir.Attr{opstest.Int("group", 4), opstest.Ints("pads", 1, 1, 1, 1)}},
	{"grouped dilated", []int{1, 12, 8, 8}, []int{8, 6, 3, 3}, []*ir.Attr{opstest.Int("group", 2), opstest.Ints("dilations", 2, 2), opstest.String("auto_pad", "SAME_UPPER")}},
	{"5x5 odd", []int{1, 3, 11, 10}, []int{5, 3, 5, 5}, []*ir.Attr{opstest.Ints("pads", 2, 1, 2, 0), opstest.Ints("strides", 1, 2)}},
	{"1-D", []int{2, 7, 20}, []int{4, 7, 3}, nil},
	{"1-D depthwise", []int{1, 4, 20}, []int{4, 1, 5}, []*ir.Attr{opstest.Int("group", 4)}},
	{"3-D", []int{1, 5, 4, 5, 6}, []int{3, 5, 3, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1, 1, 1)}},
	{"3-D depthwise", []int{1, 3, 4, 5, 6}, []int{3, 1, 3, 3, 3}, []*ir.Attr{opstest.Int("group", 3), opstest.Ints("pads", 1, 0, 1, 1, 0, 1)}},
	{"wide", []int{1, 16, 10, 10}, []int{70, 16, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1)}},
	{"big tiled", []int{1, 32, 40, 40}, []int{24, 32, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1)}},
	{"no input channels", []int{1, 0, 5, 5}, []int{3, 0, 3, 3}, nil},
	{"empty batch", []int{0, 4, 5, 5}, []int{3, 4, 3, 3}, nil},
}

// TestQConvRegistry: cpu.QConv against the formula and ops/nn's
// reference (plain int32 loops), on every int8 kernel of this CPU, into
// garbage outputs, run twice: the GEMM path (1x1 direct, im2col of quads,
// groups, dilations, 1-D and 3-D, tiles), the depthwise paths
// (cpu.Int8Depthwise on 2-D, the float32 convolution on the others), no
// input channels (the bias) and an empty batch; with and without bias and
// residual, activations the int8 epilogue clamps (Relu, Clip) and others
// after it (SiLU, HardSwish).
func TestQConvRegistry(t *testing.T) {
	acts := []struct {
		act    string
		params []float32
	}{{nn.ActNone, nil}, {nn.ActRelu, nil}, {nn.ActClip, []float32{-0.5, 0.5}}, {nn.ActSiLU, nil}, {nn.ActHardSwish, nil}}
	forEachInt8Kernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, g := range qconvGeoms {
			for ai, a := range acts {
				const xs = float32(2.0 / 127)
				x := qmmScaled(r, 2, g.x...)
				w := qmmInt8(r, g.w...)
				ws := qmmScaled(r, 1e-3, g.w[0])
				in := []*tensor.Tensor{x, w, ws}
				switch ai % 3 {
				case 1: // bias and residual
					_, shape := qcRef(t, x, w, ws, nil, nil, xs, "", nil, g.attrs)
					in = append(in, qmmScaled(r, 1, g.w[0]), qmmScaled(r, 1, shape...))
				case 2: // residual, no bias
					_, shape := qcRef(t, x, w, ws, nil, nil, xs, "", nil, g.attrs)
					in = append(in, nil, qmmScaled(r, 1, shape...))
				}
				qcCheck(t, fmt.Sprintf("%s %q extras=%d", g.name, a.act, ai%3), in, xs, a.act, a.params, g.attrs)
			}
		}
	})
}

// TestQConvRegistryRandomGeometries: cpu.QConv against the formula and
// the reference on random 2-D geometries (channels, groups, depthwise,
// kernel, strides, dilations, pads, auto_pad, batch), on every int8
// kernel.
func TestQConvRegistryRandomGeometries(t *testing.T) {
	forEachInt8Kernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(17, 18))
		n := 40
		if testing.Short() {
			n = 15
		}
		for it := 0; it < n; it++ {
			group := 1 + r.IntN(3)
			if r.IntN(4) == 0 {
				group = 2 + r.IntN(6) // depthwise
			}
			cg := 1 + r.IntN(9)
			mg := 1 + r.IntN(9)
			if group > 3 {
				cg = 1
			}
			kh, kw := 1+r.IntN(4), 1+r.IntN(4)
			sh, sw := 1+r.IntN(3), 1+r.IntN(3)
			dh, dw := 1+r.IntN(2), 1+r.IntN(2)
			h, w := (kh-1)*dh+1+r.IntN(9), (kw-1)*dw+1+r.IntN(9)
			attrs := []*ir.Attr{opstest.Int("group", int64(group)), opstest.Ints("strides", int64(sh), int64(sw)), opstest.Ints("dilations", int64(dh), int64(dw))}
			switch r.IntN(3) {
			case 0:
				attrs = append(attrs, opstest.Ints("pads", int64(r.IntN(kh)), int64(r.IntN(kw)), int64(r.IntN(kh)), int64(r.IntN(kw))))
			case 1:
				attrs = append(attrs, opstest.String("auto_pad", []string{"SAME_UPPER", "SAME_LOWER", "VALID"}[r.IntN(3)]))
			}
			xs := []int{1 + r.IntN(2), cg * group, h, w}
			ws := []int{mg * group, cg, kh, kw}
			in := []*tensor.Tensor{qmmScaled(r, 2, xs...), qmmInt8(r, ws...), qmmScaled(r, 1e-3, ws[0]), qmmScaled(r, 1, ws[0])}
			name := fmt.Sprintf("x %v w %v", xs, ws)
			for _, a := range attrs {
				name += fmt.Sprintf(" %s=%v%v%s", a.Name, a.I, a.Ints, a.S)
			}
			qcCheck(t, name, in, 2.0/127, nn.ActRelu, nil, attrs)
		}
	})
}

// TestQConvRegistryBadInput: inputs cpu.QConv does not take get the
// reference's errors (ops.ErrBadInput), never a panic.
func TestQConvRegistryBadInput(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	x, w, ws := qmmScaled(r, 1, 1, 4, 5, 5), qmmInt8(r, 3, 4, 3, 3), qmmScaled(r, 1e-2, 3)
	nan := qmmScaled(r, 1e-2, 3)
	nan.Float32s()[1] = float32(math.Inf(1))
	for _, tc := range []struct {
		name string
		in   []*tensor.Tensor
	}{
		{"channels", []*tensor.Tensor{x, qmmInt8(r, 3, 5, 3, 3), ws}},
		{"float weights", []*tensor.Tensor{x, qmmScaled(r, 1, 3, 4, 3, 3), ws}},
		{"scales", []*tensor.Tensor{x, w, qmmScaled(r, 1, 4)}},
		{"infinite scale", []*tensor.Tensor{x, w, nan}},
		{"bias", []*tensor.Tensor{x, w, ws, qmmScaled(r, 1, 2)}},
		{"residual", []*tensor.Tensor{x, w, ws, nil, qmmScaled(r, 1, 1, 3, 2, 2)}},
		{"rank", []*tensor.Tensor{qmmScaled(r, 1, 4, 5), w, ws}},
		{"two inputs", []*tensor.Tensor{x, w}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := qcNode([]*tensor.Tensor{x, w, ws}, 0.01, "", nil)
			k, impl, err := Prepare(n, 13)
			if err != nil || impl != "cpu.QConv" {
				t.Fatalf("Prepare = %q, %v", impl, err)
			}
			ref, err := ops.Prepare(n, 13)
			if err != nil {
				t.Fatal(err)
			}
			_, gerr := k.Run(garbageEnv(), tc.in)
			_, werr := ref.Run(garbageEnv(), tc.in)
			if gerr == nil || werr == nil || gerr.Error() != werr.Error() || !errors.Is(gerr, ops.ErrBadInput) {
				t.Fatalf("error %v, reference's %v (want the same, an ops.ErrBadInput)", gerr, werr)
			}
		})
	}
}

// qBenchShapes are ResNet- and MobileNet-like convolutions (batch 1).
var qBenchShapes = []struct {
	name  string
	x, w  []int
	attrs []*ir.Attr
}{
	{"resnet_3x3_64x56x56", []int{1, 64, 56, 56}, []int{64, 64, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1)}},
	{"resnet_1x1_64to256x56x56", []int{1, 64, 56, 56}, []int{256, 64, 1, 1}, nil},
	{"resnet_3x3_256x14x14", []int{1, 256, 14, 14}, []int{256, 256, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1)}},
	{"resnet_3x3_512x7x7", []int{1, 512, 7, 7}, []int{512, 512, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1)}},
	{"resnet_stem_7x7s2_3x224", []int{1, 3, 224, 224}, []int{64, 3, 7, 7}, []*ir.Attr{opstest.Ints("pads", 3, 3, 3, 3), opstest.Ints("strides", 2, 2)}},
	{"mobilenet_1x1_24to144x56x56", []int{1, 24, 56, 56}, []int{144, 24, 1, 1}, nil},
	{"mobilenet_dw3x3_144x56x56", []int{1, 144, 56, 56}, []int{144, 1, 3, 3}, []*ir.Attr{opstest.Ints("pads", 1, 1, 1, 1), opstest.Int("group", 144)}},
	{"mobilenet_1x1_144to32x28x28", []int{1, 144, 28, 28}, []int{32, 144, 1, 1}, nil},
}

// BenchmarkQConv compares the registry's kiln::QConv (int8) with its
// kiln::FusedConv (float32, default tactic) on the same layers, both with
// bias and Relu and constant weights, and reports the multiply-adds per
// second as GOPS (2 operations each). (Moved from ops/nn with the fast
// path: there it now measures the plain reference.)
func BenchmarkQConv(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, s := range qBenchShapes {
		x := qmmScaled(r, 1, s.x...)
		w := qmmScaled(r, 0.1, s.w...)
		bias := qmmScaled(r, 0.1, s.w[0])
		wq := qmmInt8(r, s.w...)
		ws := qmmScaled(r, 1e-3, s.w[0])
		out, err := opstest.Exec(opstest.Node("Conv", 2, 1, s.attrs...), 13, x, w)
		if err != nil {
			b.Fatal(err)
		}
		// output elements times window size
		macs := float64(out[0].Len()) * float64(w.Len()/s.w[0])
		run := func(b *testing.B, n *ir.Node, in ...*tensor.Tensor) {
			for i, t := range in {
				n.Inputs[i].Type = ops.TypeOf(t)
			}
			n.Inputs[1].Const = in[1]
			kern, _, err := Prepare(n, 13)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := kern.Infer(n.Inputs); err != nil {
				b.Fatal(err)
			}
			y := tensor.New(tensor.Float32, out[0].Shape...)
			env := &ops.Env{Alloc: func(tensor.DType, []int) (*tensor.Tensor, error) { return y, nil }}
			start := time.Now()
			for b.Loop() {
				if _, err := kern.Run(env, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*macs*float64(b.N)/time.Since(start).Seconds()/1e9, "GOPS")
		}
		b.Run(s.name+"/float32", func(b *testing.B) {
			run(b, fusedNode("FusedConv", 3, nn.ActRelu, nil, s.attrs...), x, w, bias)
		})
		b.Run(s.name+"/int8", func(b *testing.B) {
			n := fusedNode("QConv", 4, nn.ActRelu, nil, s.attrs...)
			n.Attrs["x_scale"] = opstest.Float("x_scale", 1.0/127)
			run(b, n, x, wq, ws, bias)
		})
	}
}
