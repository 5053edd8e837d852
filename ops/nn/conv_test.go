package nn

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// refConv is the oracle convolution: one plain loop per output and kernel
// element over explicit begin pads. x is [n,c,in...], w [m,c/group,k...].
func refConv(x []float64, xs []int, w []float64, ws []int, bias []float64, group int, strides, dils, padB, outSp []int) []float64 {
	r := len(xs) - 2
	n, c, m := xs[0], xs[1], ws[0]
	cg, mg := c/group, m/group
	in, k := xs[2:], ws[2:]
	outSize := 1
	for _, o := range outSp {
		outSize *= o
	}
	kSize := tensor.NumElements(k)
	inSize := tensor.NumElements(in)
	y := make([]float64, n*m*outSize)
	oc, kc := make([]int, r), make([]int, r)
	for b := 0; b < n; b++ {
		for mo := 0; mo < m; mo++ {
			gr := mo / mg
			for o := 0; o < outSize; o++ {
				rem := o
				for i := r - 1; i >= 0; i-- {
					oc[i] = rem % outSp[i]
					rem /= outSp[i]
				}
				sum := 0.0
				if bias != nil {
					sum = bias[mo]
				}
				for ci := 0; ci < cg; ci++ {
					for kk := 0; kk < kSize; kk++ {
						rem := kk
						for i := r - 1; i >= 0; i-- {
							kc[i] = rem % k[i]
							rem /= k[i]
						}
						off, ok := 0, true
						for i := 0; i < r; i++ {
							p := oc[i]*strides[i] - padB[i] + kc[i]*dils[i]
							if p < 0 || p >= in[i] {
								ok = false
								break
							}
							off = off*in[i] + p
						}
						if ok {
							sum += x[(b*c+gr*cg+ci)*inSize+off] * w[(mo*cg+ci)*kSize+kk]
						}
					}
				}
				y[(b*m+mo)*outSize+o] = sum
			}
		}
	}
	return y
}

type convCase struct {
	name            string
	x, w            []int
	group           int
	strides, dils   []int
	pads            []int // nil: auto_pad or zero
	autoPad         string
	bias            bool
	wantOut         []int // expected spatial output
	wantPadB        []int // expected begin pads (for the oracle)
	kernelShapeAttr bool
}

var convCases = []convCase{
	{name: "1d", x: []int{2, 3, 9}, w: []int{4, 3, 3}, group: 1, strides: []int{1}, dils: []int{1}, pads: []int{0, 0}, wantOut: []int{7}, wantPadB: []int{0}, bias: true},
	{name: "1d_stride_pad_dil", x: []int{1, 2, 11}, w: []int{3, 2, 3}, group: 1, strides: []int{2}, dils: []int{2}, pads: []int{2, 1}, wantOut: []int{5}, wantPadB: []int{2}},
	{name: "1d_pad_bigger_than_input", x: []int{1, 4, 1}, w: []int{4, 4, 5}, group: 1, strides: []int{1}, dils: []int{1}, pads: []int{2, 2}, wantOut: []int{1}, wantPadB: []int{2}, bias: true},
	{name: "2d", x: []int{2, 3, 7, 6}, w: []int{5, 3, 3, 3}, group: 1, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}, wantOut: []int{7, 6}, wantPadB: []int{1, 1}, bias: true, kernelShapeAttr: true},
	{name: "2d_asym", x: []int{1, 2, 7, 5}, w: []int{3, 2, 3, 2}, group: 1, strides: []int{2, 1}, dils: []int{1, 2}, pads: []int{1, 0, 0, 2}, wantOut: []int{3, 5}, wantPadB: []int{1, 0}},
	{name: "2d_groups", x: []int{2, 4, 6, 6}, w: []int{6, 2, 3, 3}, group: 2, strides: []int{2, 2}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}, wantOut: []int{3, 3}, wantPadB: []int{1, 1}, bias: true},
	{name: "2d_depthwise", x: []int{1, 4, 8, 8}, w: []int{8, 1, 3, 3}, group: 4, strides: []int{1, 1}, dils: []int{2, 2}, pads: []int{2, 2, 2, 2}, wantOut: []int{8, 8}, wantPadB: []int{2, 2}, bias: true},
	{name: "2d_pointwise", x: []int{2, 8, 5, 4}, w: []int{3, 8, 1, 1}, group: 1, strides: []int{1, 1}, dils: []int{1, 1}, wantOut: []int{5, 4}, wantPadB: []int{0, 0}, bias: true},
	{name: "2d_same_upper", x: []int{1, 1, 5, 5}, w: []int{1, 1, 3, 3}, group: 1, strides: []int{2, 2}, dils: []int{1, 1}, autoPad: "SAME_UPPER", wantOut: []int{3, 3}, wantPadB: []int{1, 1}},
	{name: "2d_same_lower_even", x: []int{1, 2, 6, 6}, w: []int{2, 2, 4, 4}, group: 1, strides: []int{1, 1}, dils: []int{1, 1}, autoPad: "SAME_LOWER", wantOut: []int{6, 6}, wantPadB: []int{2, 2}},
	{name: "2d_same_upper_even", x: []int{1, 2, 6, 6}, w: []int{2, 2, 4, 4}, group: 1, strides: []int{1, 1}, dils: []int{1, 1}, autoPad: "SAME_UPPER", wantOut: []int{6, 6}, wantPadB: []int{1, 1}},
	{name: "2d_valid", x: []int{1, 2, 7, 6}, w: []int{2, 2, 3, 3}, group: 1, strides: []int{2, 2}, dils: []int{1, 1}, autoPad: "VALID", wantOut: []int{3, 2}, wantPadB: []int{0, 0}},
	{name: "3d", x: []int{1, 2, 5, 4, 6}, w: []int{3, 2, 2, 3, 3}, group: 1, strides: []int{1, 2, 1}, dils: []int{2, 1, 1}, pads: []int{1, 0, 1, 0, 1, 1}, wantOut: []int{4, 2, 6}, wantPadB: []int{1, 0, 1}, bias: true},
	{name: "3d_groups", x: []int{2, 4, 4, 4, 4}, w: []int{4, 2, 3, 3, 3}, group: 2, strides: []int{1, 1, 1}, dils: []int{1, 1, 1}, pads: []int{1, 1, 1, 1, 1, 1}, wantOut: []int{4, 4, 4}, wantPadB: []int{1, 1, 1}},
}

func (c *convCase) node(op string, nIn int) *ir.Node {
	attrs := []*ir.Attr{opstest.Int("group", int64(c.group))}
	toI64 := func(v []int) []int64 {
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = int64(x)
		}
		return out
	}
	attrs = append(attrs, opstest.Ints("strides", toI64(c.strides)...), opstest.Ints("dilations", toI64(c.dils)...))
	if c.pads != nil {
		attrs = append(attrs, opstest.Ints("pads", toI64(c.pads)...))
	}
	if c.autoPad != "" {
		attrs = append(attrs, opstest.String("auto_pad", c.autoPad))
	}
	if c.kernelShapeAttr {
		attrs = append(attrs, opstest.Ints("kernel_shape", toI64(c.w[2:])...))
	}
	return opstest.Node(op, nIn, 1, attrs...)
}

func TestConvAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range convCases {
		for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16} {
			t.Run(fmt.Sprintf("%s/%v", c.name, dt), func(t *testing.T) {
				x := randTensor(r, dt, c.x...)
				w := randTensor(r, dt, c.w...)
				in := []*tensor.Tensor{x, w}
				var bias []float64
				if c.bias {
					b := randTensor(r, dt, c.w[0])
					in = append(in, b)
					bias = floats(b)
				}
				out := opstest.Run(t, c.node("Conv", len(in)), 11, in...)
				want := refConv(floats(x), c.x, floats(w), c.w, bias, c.group, c.strides, c.dils, c.wantPadB, c.wantOut)
				tol := 1e-5
				if dt == tensor.Float16 {
					tol = 2e-2
				}
				closeTo(t, "Conv", out[0], append([]int{c.x[0], c.w[0]}, c.wantOut...), want, tol)
			})
		}
	}
}

// TestConvGenericPath runs the 2-D cases through the generic im2col path
// (not cpu.Conv2D) to check it against the oracle too.
func TestConvGenericPath(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range convCases {
		if len(c.x) != 4 {
			continue
		}
		k, err := prepareConv(c.node("Conv", 2), 11)
		if err != nil {
			t.Fatal(err)
		}
		x := randTensor(r, tensor.Float32, c.x...)
		w := randTensor(r, tensor.Float32, c.w...)
		s, outShape, err := convSetup("Conv", &k.(*convOp).win, c.group, x, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		y := make([]float32, tensor.NumElements(outShape))
		convGeneric(s, x.Float32s(), w.Float32s(), nil, y)
		want := refConv(floats(x), c.x, floats(w), c.w, nil, c.group, c.strides, c.dils, c.wantPadB, c.wantOut)
		closeTo(t, c.name, f32(y, outShape...), outShape, want, 1e-5)
	}
}

func TestConvBasic(t *testing.T) {
	// ONNX's test_basic_conv_with_padding
	x := make([]float32, 25)
	for i := range x {
		x[i] = float32(i)
	}
	w := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1}
	n := opstest.Node("Conv", 2, 1, opstest.Ints("kernel_shape", 3, 3), opstest.Ints("pads", 1, 1, 1, 1))
	out := opstest.Run(t, n, 11, f32(x, 1, 1, 5, 5), f32(w, 1, 1, 3, 3))
	want := []float32{12, 21, 27, 33, 24, 33, 54, 63, 72, 51, 63, 99, 108, 117, 81, 93, 144, 153, 162, 111, 72, 111, 117, 123, 84}
	opstest.AllClose(t, out[0], f32(want, 1, 1, 5, 5), 0, 1e-5)
}

func TestConvInfer(t *testing.T) {
	n := opstest.Node("Conv", 3, 1, opstest.Ints("strides", 2, 2), opstest.Ints("pads", 3, 3, 3, 3))
	got := inferTypes(t, n, 13,
		ty(tensor.Float32, ir.S("batch"), ir.D(3), ir.D(224), ir.D(224)),
		ty(tensor.Float32, ir.D(64), ir.D(3), ir.D(7), ir.D(7)),
		ty(tensor.Float32, ir.D(64)))
	if s := got[0].Shape.String(); s != "[batch,64,112,112]" {
		t.Errorf("Conv shape %s", s)
	}
	got = inferTypes(t, n, 13,
		ty(tensor.Float32, ir.S("batch"), ir.D(3), ir.S("h"), ir.D(224)),
		ty(tensor.Float32, ir.D(64), ir.D(3), ir.D(7), ir.D(7)))
	if s := got[0].Shape.String(); s != "[batch,64,?,112]" {
		t.Errorf("Conv shape %s", s)
	}
	same := opstest.Node("Conv", 2, 1, opstest.String("auto_pad", "SAME_UPPER"), opstest.Ints("strides", 2, 2))
	got = inferTypes(t, same, 13,
		ty(tensor.Float32, ir.D(1), ir.D(8), ir.D(15), ir.D(16)),
		ty(tensor.Float32, ir.S("m"), ir.D(8), ir.D(3), ir.D(3)))
	if s := got[0].Shape.String(); s != "[1,m,8,8]" {
		t.Errorf("Conv SAME shape %s", s)
	}
	// unknown input rank: the weights give it
	got = inferTypes(t, n, 13, ir.Type{DType: tensor.Float32}, ty(tensor.Float32, ir.D(64), ir.D(3), ir.D(7), ir.D(7)))
	if s := got[0].Shape.String(); s != "[?,64,?,?]" {
		t.Errorf("Conv shape %s", s)
	}
}

func TestConvBadInput(t *testing.T) {
	n := func() *ir.Node { return opstest.Node("Conv", 3, 1) }
	x := tensor.New(tensor.Float32, 1, 3, 5, 5)
	wantBadInput(t, "channels", opstest.Node("Conv", 2, 1), 11, x, tensor.New(tensor.Float32, 2, 2, 3, 3))
	wantBadInput(t, "rank", opstest.Node("Conv", 2, 1), 11, x, tensor.New(tensor.Float32, 2, 3, 3))
	wantBadInput(t, "bias", n(), 11, x, tensor.New(tensor.Float32, 2, 3, 3, 3), tensor.New(tensor.Float32, 3))
	wantBadInput(t, "too big kernel", opstest.Node("Conv", 2, 1), 11, x, tensor.New(tensor.Float32, 2, 3, 6, 6))
	wantBadInput(t, "dtype", opstest.Node("Conv", 2, 1), 11, x, tensor.New(tensor.Float64, 2, 3, 3, 3))
	wantBadInput(t, "int", opstest.Node("Conv", 2, 1), 11, tensor.New(tensor.Int32, 1, 3, 5, 5), tensor.New(tensor.Int32, 2, 3, 3, 3))
	wantBadInput(t, "group", opstest.Node("Conv", 2, 1, opstest.Int("group", 2)), 11, x, tensor.New(tensor.Float32, 3, 1, 3, 3))
	wantBadInput(t, "kernel_shape", opstest.Node("Conv", 2, 1, opstest.Ints("kernel_shape", 2, 2)), 11, x, tensor.New(tensor.Float32, 2, 3, 3, 3))
	wantBadInput(t, "strides rank", opstest.Node("Conv", 2, 1, opstest.Ints("strides", 1, 1, 1)), 11, x, tensor.New(tensor.Float32, 2, 3, 3, 3))
	wantBadInput(t, "scalar", opstest.Node("Conv", 2, 1), 11, tensor.New(tensor.Float32), tensor.New(tensor.Float32))
	wantBadInput(t, "missing", opstest.Node("Conv", 2, 1), 11, x)
	wantBadInput(t, "negative stride", opstest.Node("Conv", 2, 1, opstest.Ints("strides", 0, 1)), 11, x, tensor.New(tensor.Float32, 2, 3, 3, 3))
	wantBadInput(t, "auto_pad", opstest.Node("Conv", 2, 1, opstest.String("auto_pad", "FOO")), 11, x, tensor.New(tensor.Float32, 2, 3, 3, 3))
}

func TestConvInteger(t *testing.T) {
	// ONNX's test_convinteger_with_padding
	x := u8([]uint8{2, 3, 4, 5, 6, 7, 8, 9, 10}, 1, 1, 3, 3)
	w := u8([]uint8{1, 1, 1, 1}, 1, 1, 2, 2)
	n := opstest.Node("ConvInteger", 3, 1, opstest.Ints("pads", 1, 1, 1, 1))
	out := opstest.Run(t, n, 10, x, w, tensor.Scalar(tensor.Uint8, 1))
	want := []float64{1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9}
	if out[0].DType != tensor.Int32 {
		t.Fatalf("dtype %v", out[0].DType)
	}
	closeTo(t, "ConvInteger", out[0], []int{1, 1, 4, 4}, want, 0)

	// int8 with a per-channel weight zero point against the oracle
	r := rand.New(rand.NewPCG(5, 6))
	xi := randTensor(r, tensor.Int8, 1, 2, 5, 5)
	wi := randTensor(r, tensor.Int8, 3, 2, 3, 3)
	wz := tensor.New(tensor.Int8, 3)
	copy(wz.Int8s(), []int8{1, -2, 0})
	out = opstest.Run(t, opstest.Node("ConvInteger", 4, 1), 10, xi, wi, tensor.Scalar(tensor.Int8, 2), wz)
	xf := floats(xi)
	for i := range xf {
		xf[i] -= 2
	}
	wf := floats(wi)
	for i := range wf {
		wf[i] -= float64(wz.Int8s()[i/18])
	}
	want = refConv(xf, xi.Shape, wf, wi.Shape, nil, 1, []int{1, 1}, []int{1, 1}, []int{0, 0}, []int{3, 3})
	closeTo(t, "ConvInteger int8", out[0], []int{1, 3, 3, 3}, want, 0)

	wantBadInput(t, "float", opstest.Node("ConvInteger", 2, 1), 10, tensor.New(tensor.Float32, 1, 1, 3, 3), tensor.New(tensor.Float32, 1, 1, 2, 2))
	wantBadInput(t, "zp type", opstest.Node("ConvInteger", 3, 1), 10, x, w, tensor.Scalar(tensor.Int8, 1))
	wantBadInput(t, "zp shape", opstest.Node("ConvInteger", 4, 1), 10, x, w, nil, u8([]uint8{1, 2}, 2))
}

func TestQLinearConv(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	x := randTensor(r, tensor.Uint8, 1, 2, 4, 4)
	w := randTensor(r, tensor.Uint8, 2, 2, 3, 3)
	bias := tensor.New(tensor.Int32, 2)
	copy(bias.Int32s(), []int32{10, -20})
	xs, xz := float32(0.05), uint8(3)
	ws := f32([]float32{0.02, 0.03}, 2)
	wz := u8([]uint8{4, 5}, 2)
	ys, yz := float32(0.1), uint8(128)
	n := opstest.Node("QLinearConv", 9, 1, opstest.Ints("pads", 1, 1, 1, 1))
	out := opstest.Run(t, n, 10, x, scalarOf(tensor.Float32, float64(xs)), scalarOf(tensor.Uint8, float64(xz)),
		w, ws, wz, scalarOf(tensor.Float32, float64(ys)), scalarOf(tensor.Uint8, float64(yz)), bias)
	// oracle: dequantize, convolve in float, requantize
	xf := floats(x)
	for i := range xf {
		xf[i] = (xf[i] - float64(xz)) * float64(xs)
	}
	wf := floats(w)
	for i := range wf {
		m := i / 18
		wf[i] = (wf[i] - float64(wz.Uint8s()[m])) * float64(ws.Float32s()[m])
	}
	bf := []float64{10 * float64(xs) * 0.02, -20 * float64(xs) * 0.03}
	ref := refConv(xf, x.Shape, wf, w.Shape, bf, 1, []int{1, 1}, []int{1, 1}, []int{1, 1}, []int{4, 4})
	for i, v := range ref {
		q := v/float64(ys) + float64(yz)
		q = max(0, min(255, q))
		if d := out[0].Float(i) - q; d > 1 || d < -1 {
			t.Fatalf("element %d: %g, want about %g", i, out[0].Float(i), q)
		}
	}
	if out[0].DType != tensor.Uint8 {
		t.Errorf("dtype %v", out[0].DType)
	}
}

// TestConvTiling reruns the reference comparisons with tiny im2col and
// col2im tiles.
func TestConvTiling(t *testing.T) {
	old := convTile
	defer func() { convTile = old }()
	for _, tile := range []int{1, 7, 50} {
		convTile = tile
		TestConvAgainstReference(t)
		TestConvGenericPath(t)
		TestConvTransposeAgainstReference(t)
	}
}

func TestEmptyTensors(t *testing.T) {
	cases := []struct {
		name string
		n    *ir.Node
		in   []*tensor.Tensor
		want []int
	}{
		{"conv batch 0", opstest.Node("Conv", 2, 1), []*tensor.Tensor{tensor.New(tensor.Float32, 0, 2, 4, 4), tensor.New(tensor.Float32, 3, 2, 3, 3)}, []int{0, 3, 2, 2}},
		{"conv channels 0", opstest.Node("Conv", 3, 1), []*tensor.Tensor{tensor.New(tensor.Float32, 1, 0, 4, 4), tensor.New(tensor.Float32, 3, 0, 3, 3), f32([]float32{1, 2, 3}, 3)}, []int{1, 3, 2, 2}},
		{"conv3d out channels 0", opstest.Node("Conv", 2, 1), []*tensor.Tensor{tensor.New(tensor.Float64, 1, 2, 4, 4, 4), tensor.New(tensor.Float64, 0, 2, 3, 3, 3)}, []int{1, 0, 2, 2, 2}},
		{"convtranspose batch 0", opstest.Node("ConvTranspose", 2, 1), []*tensor.Tensor{tensor.New(tensor.Float32, 0, 2, 4, 4), tensor.New(tensor.Float32, 2, 3, 3, 3)}, []int{0, 3, 6, 6}},
		{"maxpool batch 0", opstest.Node("MaxPool", 1, 2, opstest.Ints("kernel_shape", 2, 2)), []*tensor.Tensor{tensor.New(tensor.Float32, 0, 3, 4, 4)}, []int{0, 3, 3, 3}},
		{"avgpool channels 0", opstest.Node("AveragePool", 1, 1, opstest.Ints("kernel_shape", 2)), []*tensor.Tensor{tensor.New(tensor.Float32, 2, 0, 4)}, []int{2, 0, 3}},
		{"globalavg 0", opstest.Node("GlobalAveragePool", 1, 1), []*tensor.Tensor{tensor.New(tensor.Float32, 0, 3, 4, 4)}, []int{0, 3, 1, 1}},
		{"gemm k 0", opstest.Node("Gemm", 3, 1), []*tensor.Tensor{tensor.New(tensor.Float32, 2, 0), tensor.New(tensor.Float32, 0, 3), f32([]float32{1, 2, 3}, 3)}, []int{2, 3}},
		{"einsum 0", opstest.Node("Einsum", 2, 1, opstest.String("equation", "ij,jk->ik")), []*tensor.Tensor{tensor.New(tensor.Float32, 2, 0), tensor.New(tensor.Float32, 0, 3)}, []int{2, 3}},
		{"lstm batch 0", opstest.Node("LSTM", 3, 3), []*tensor.Tensor{tensor.New(tensor.Float32, 2, 0, 3), tensor.New(tensor.Float32, 1, 8, 3), tensor.New(tensor.Float32, 1, 8, 2)}, []int{2, 1, 0, 2}},
		{"quantize 0", opstest.Node("QuantizeLinear", 2, 1), []*tensor.Tensor{tensor.New(tensor.Float32, 0, 3), scalarOf(tensor.Float32, 1)}, []int{0, 3}},
	}
	for _, c := range cases {
		outs, err := execSafe(c.n, 13, c.in...)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !sameShape(outs[0].Shape, c.want) {
			t.Errorf("%s: shape %v, want %v", c.name, outs[0].Shape, c.want)
		}
	}
}
