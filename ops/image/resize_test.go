package image

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

func f32(v ...float32) *tensor.Tensor { return tensor.FromFloat32(v, len(v)) }
func i64(v ...int64) *tensor.Tensor   { return tensor.FromInt64(v, len(v)) }

// resize13 runs Resize-13 on a 1-D input with either scales or sizes.
func resize13(t *testing.T, x, scales, sizes *tensor.Tensor, attrs ...*ir.Attr) *tensor.Tensor {
	t.Helper()
	n := opstest.Node("Resize", 4, 1, attrs...)
	return opstest.Run(t, n, 13, x, nil, scales, sizes)[0]
}

func TestResizeLinearCoordinateModes(t *testing.T) {
	x := f32(1, 2)
	for _, tc := range []struct {
		ctm  string
		want []float32
	}{
		// x_original = (x+0.5)/2-0.5 = -0.25, 0.25, 0.75, 1.25 (clamped)
		{"half_pixel", []float32{1, 1.25, 1.75, 2}},
		{"pytorch_half_pixel", []float32{1, 1.25, 1.75, 2}},
		// x*(2-1)/(4-1)
		{"align_corners", []float32{1, 4.0 / 3, 5.0 / 3, 2}},
		// x/2
		{"asymmetric", []float32{1, 1.5, 2, 2}},
	} {
		t.Run(tc.ctm, func(t *testing.T) {
			got := resize13(t, x, f32(2), nil, opstest.String("mode", "linear"),
				opstest.String("coordinate_transformation_mode", tc.ctm))
			opstest.AllClose(t, got, f32(tc.want...), 1e-6, 1e-6)
		})
	}
}

func TestResizeHalfPixelSymmetric(t *testing.T) {
	// in 3, scale 1.5: output width 4.5, length 4; adjustment 4/4.5, offset
	// 1.5*(1-8/9) = 1/6; x_original = 1/6 + (x+0.5)/1.5 - 0.5 = 0, 2/3, 4/3, 2.
	got := resize13(t, f32(0, 3, 6), f32(1.5), nil, opstest.String("mode", "linear"),
		opstest.String("coordinate_transformation_mode", "half_pixel_symmetric"))
	opstest.AllClose(t, got, f32(0, 2, 4, 6), 1e-5, 1e-5)
}

func TestResizeTFCropAndResize(t *testing.T) {
	x := f32(0, 10, 20, 30, 40)
	attrs := []*ir.Attr{opstest.String("mode", "linear"),
		opstest.String("coordinate_transformation_mode", "tf_crop_and_resize"),
		opstest.Float("extrapolation_value", 7)}
	n := opstest.Node("Resize", 4, 1, attrs...)
	// x_original = x*(0.5)*4/2 + 0.25*4 = x + 1
	got := opstest.Run(t, n, 13, x, f32(0.25, 0.75), nil, i64(3))[0]
	opstest.AllClose(t, got, f32(10, 20, 30), 1e-6, 1e-6)
	// x_original = 2x - 1: the first point is outside and extrapolated
	got = opstest.Run(t, n, 13, x, f32(-0.25, 0.75), nil, i64(3))[0]
	opstest.AllClose(t, got, f32(7, 10, 30), 1e-6, 1e-6)
	// nearest mode extrapolates too
	n = opstest.Node("Resize", 4, 1, attrs[1:]...)
	got = opstest.Run(t, n, 13, x, f32(-0.25, 0.75), nil, i64(3))[0]
	opstest.AllClose(t, got, f32(7, 10, 30), 0, 0)
}

func TestResizeNearestModes(t *testing.T) {
	x := f32(10, 20, 30, 40)
	// asymmetric, size 8: x_original = 0, .5, 1, 1.5, 2, 2.5, 3, 3.5
	for _, tc := range []struct {
		mode string
		want []float32
	}{
		{"round_prefer_floor", []float32{10, 10, 20, 20, 30, 30, 40, 40}},
		{"round_prefer_ceil", []float32{10, 20, 20, 30, 30, 40, 40, 40}},
		{"floor", []float32{10, 10, 20, 20, 30, 30, 40, 40}},
		{"ceil", []float32{10, 20, 20, 30, 30, 40, 40, 40}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			got := resize13(t, x, nil, i64(8), opstest.String("nearest_mode", tc.mode),
				opstest.String("coordinate_transformation_mode", "asymmetric"))
			opstest.AllClose(t, got, f32(tc.want...), 0, 0)
		})
	}
	// tf_half_pixel_for_nn (opset 11): x_original = (x+0.5)/0.5 = 1, 3
	n := opstest.Node("Resize", 4, 1, opstest.String("coordinate_transformation_mode", "tf_half_pixel_for_nn"))
	got := opstest.Run(t, n, 11, x, f32(), f32(), i64(2))[0]
	opstest.AllClose(t, got, f32(20, 40), 0, 0)
}

func TestResize10AndUpsample(t *testing.T) {
	x := f32(10, 20, 30, 40, 50)
	// Resize-10 shrinking: asymmetric, ceil: x/0.6 = 0, 1.67, 3.33 -> 0, 2, 4
	got := opstest.Run(t, opstest.Node("Resize", 2, 1), 10, x, f32(0.6))[0]
	opstest.AllClose(t, got, f32(10, 30, 50), 0, 0)
	// enlarging: floor
	got = opstest.Run(t, opstest.Node("Resize", 2, 1), 10, f32(1, 2), f32(2))[0]
	opstest.AllClose(t, got, f32(1, 1, 2, 2), 0, 0)
	// Resize-10 linear is asymmetric
	got = opstest.Run(t, opstest.Node("Resize", 2, 1, opstest.String("mode", "linear")), 10, f32(1, 2), f32(2))[0]
	opstest.AllClose(t, got, f32(1, 1.5, 2, 2), 0, 0)
	// Upsample-7: scales attribute
	x2 := tensor.FromFloat32([]float32{1, 2, 3, 4}, 1, 1, 2, 2)
	got = opstest.Run(t, opstest.Node("Upsample", 1, 1, opstest.Floats("scales", 1, 1, 2, 3)), 7, x2)[0]
	want := tensor.FromFloat32([]float32{
		1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2,
		3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4}, 1, 1, 4, 6)
	opstest.AllClose(t, got, want, 0, 0)
	// Upsample-9: scales input; bilinear
	got = opstest.Run(t, opstest.Node("Upsample", 2, 1, opstest.String("mode", "linear")), 9, f32(1, 2), f32(2))[0]
	opstest.AllClose(t, got, f32(1, 1.5, 2, 2), 0, 0)
}

func TestResizeCubic(t *testing.T) {
	// An impulse, asymmetric, scale 2 (A = -0.75): the Keys kernel at
	// distances 0.5 and 1.5 is 0.59375 and -0.09375.
	got := resize13(t, f32(0, 0, 1, 0, 0), f32(2), nil, opstest.String("mode", "cubic"),
		opstest.String("coordinate_transformation_mode", "asymmetric"))
	opstest.AllClose(t, got, f32(0, -0.09375, 0, 0.59375, 1, 0.59375, 0, -0.09375, 0, 0), 0, 1e-6)
	// At the left edge the tap at index -1 reads x[0] ...
	got = resize13(t, f32(1, 0, 0, 0), f32(2), nil, opstest.String("mode", "cubic"),
		opstest.String("coordinate_transformation_mode", "asymmetric"))
	if v := got.Float32s()[1]; v != 0.5 {
		t.Errorf("edge-padded cubic: got %g, want 0.5", v)
	}
	// ... unless exclude_outside drops it and renormalizes:
	// 0.59375 / (0.59375 + 0.59375 - 0.09375)
	got = resize13(t, f32(1, 0, 0, 0), f32(2), nil, opstest.String("mode", "cubic"),
		opstest.String("coordinate_transformation_mode", "asymmetric"), opstest.Int("exclude_outside", 1))
	if v, want := float64(got.Float32s()[1]), 0.59375/1.09375; v-want > 1e-6 || want-v > 1e-6 {
		t.Errorf("exclude_outside: got %g, want %g", v, want)
	}
	// cubic_coeff_a = -0.5 at distance 0.5: ((1.5*0.5)-2.5)*0.25+1 = 0.5625
	got = resize13(t, f32(0, 0, 1, 0, 0), f32(2), nil, opstest.String("mode", "cubic"),
		opstest.String("coordinate_transformation_mode", "asymmetric"), opstest.Float("cubic_coeff_a", -0.5))
	if v := got.Float32s()[3]; v != 0.5625 {
		t.Errorf("cubic_coeff_a: got %g, want 0.5625", v)
	}
}

func TestResizeAntialias(t *testing.T) {
	// scale 0.5: the linear kernel widens to 4 taps, weights
	// (0.25, 0.75, 0.75, 0.25)/2 around x_original = 2x + 0.5.
	x := f32(0, 4, 8, 12, 16, 20, 24, 28)
	n := opstest.Node("Resize", 4, 1, opstest.String("mode", "linear"), opstest.Int("antialias", 1))
	got := opstest.Run(t, n, 18, x, nil, f32(0.5), nil)[0]
	opstest.AllClose(t, got, f32(2.5, 10, 18, 25.5), 1e-6, 1e-6)
	// enlarging is unaffected by antialias
	got = opstest.Run(t, n, 18, f32(1, 2), nil, f32(2), nil)[0]
	opstest.AllClose(t, got, f32(1, 1.25, 1.75, 2), 1e-6, 1e-6)
	// the 4x4 cases of the ONNX backend tests (1..16, scales 0.6 or sizes 3)
	x4 := tensor.New(tensor.Float32, 1, 1, 4, 4)
	for i := range x4.Float32s() {
		x4.Float32s()[i] = float32(i + 1)
	}
	for _, tc := range []struct {
		mode   string
		scales *tensor.Tensor
		sizes  *tensor.Tensor
		want   []float32
	}{
		{"linear", f32(1, 1, 0.6, 0.6), nil, []float32{2.875, 4.5, 9.375, 11}},
		{"cubic", f32(1, 1, 0.6, 0.6), nil, []float32{2.5180721, 4.2858863, 9.589329, 11.357142}},
		{"linear", nil, i64(1, 1, 3, 3), []float32{2.3636363, 3.590909, 4.818182, 7.2727275, 8.5, 9.727273, 12.181818, 13.409091, 14.636364}},
		{"cubic", nil, i64(1, 1, 3, 3), []float32{1.7750092, 3.1200073, 4.4650054, 7.1550016, 8.5, 9.844998, 12.534994, 13.8799925, 15.224991}},
	} {
		n := opstest.Node("Resize", 4, 1, opstest.String("mode", tc.mode), opstest.Int("antialias", 1))
		got := opstest.Run(t, n, 18, x4, nil, tc.scales, tc.sizes)[0]
		side := 2
		if tc.sizes != nil {
			side = 3
		}
		opstest.AllClose(t, got, tensor.FromFloat32(tc.want, 1, 1, side, side), 1e-5, 1e-5)
	}
	if _, err := ops.Prepare(opstest.Node("Resize", 4, 1, opstest.Int("antialias", 1)), 18); !errors.Is(err, ops.ErrBadAttr) {
		t.Errorf("antialias with nearest: err = %v, want ErrBadAttr", err)
	}
}

func TestResizeAxesAndAspectRatio(t *testing.T) {
	x := tensor.FromFloat32([]float32{0, 1, 2, 3, 4, 5}, 2, 3)
	for _, axes := range [][]int64{{1}, {-1}} {
		n := opstest.Node("Resize", 4, 1, opstest.Ints("axes", axes...),
			opstest.String("coordinate_transformation_mode", "asymmetric"))
		got := opstest.Run(t, n, 18, x, nil, f32(2), nil)[0]
		want := tensor.FromFloat32([]float32{0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5}, 2, 6)
		opstest.AllClose(t, got, want, 0, 0)
	}
	x4 := tensor.FromFloat32([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 1, 1, 2, 4)
	for _, tc := range []struct {
		policy string
		shape  []int
	}{{"stretch", []int{1, 1, 4, 4}}, {"not_larger", []int{1, 1, 2, 4}}, {"not_smaller", []int{1, 1, 4, 8}}} {
		n := opstest.Node("Resize", 4, 1, opstest.Ints("axes", 2, 3), opstest.String("keep_aspect_ratio_policy", tc.policy))
		got := opstest.Run(t, n, 18, x4, nil, nil, i64(4, 4))[0]
		if fmt.Sprint(got.Shape) != fmt.Sprint(tc.shape) {
			t.Errorf("%s: shape %v, want %v", tc.policy, got.Shape, tc.shape)
		}
	}
}

func TestResizeDTypes(t *testing.T) {
	// integers: nearest gathers; linear truncates toward zero
	xu := &tensor.Tensor{DType: tensor.Uint8, Shape: []int{2}, Data: []byte{7, 9}}
	got := resize13(t, xu, f32(2), nil, opstest.String("coordinate_transformation_mode", "asymmetric"))
	if fmt.Sprint(got.Uint8s()) != "[7 7 9 9]" {
		t.Errorf("uint8 nearest: %v", got.Uint8s())
	}
	xi := tensor.New(tensor.Int32, 2)
	copy(xi.Int32s(), []int32{0, 3})
	got = resize13(t, xi, nil, i64(4), opstest.String("mode", "linear"),
		opstest.String("coordinate_transformation_mode", "asymmetric"))
	if fmt.Sprint(got.Int32s()) != "[0 1 3 3]" {
		t.Errorf("int32 linear: %v", got.Int32s())
	}
	// float16 and float64 linear
	for _, dt := range []tensor.DType{tensor.Float16, tensor.BFloat16, tensor.Float64} {
		x := tensor.New(dt, 2)
		x.SetFloat(0, 1)
		x.SetFloat(1, 2)
		got = resize13(t, x, f32(2), nil, opstest.String("mode", "linear"))
		want := tensor.New(dt, 4)
		for i, v := range []float64{1, 1.25, 1.75, 2} {
			want.SetFloat(i, v)
		}
		opstest.AllClose(t, got, want, 0, 0)
	}
	// strings: nearest only
	xs := &tensor.Tensor{DType: tensor.String, Shape: []int{2}, Strings: []string{"a", "b"}}
	got = resize13(t, xs, f32(2), nil)
	if fmt.Sprint(got.Strings) != "[a a b b]" {
		t.Errorf("string nearest: %v", got.Strings)
	}
	if _, err := opstest.Exec(opstest.Node("Resize", 4, 1, opstest.String("mode", "linear")), 13, xs, nil, f32(2), nil); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("string linear: err = %v", err)
	}
}

// TestResizeMatchesReference compares the separable kernel with a
// transcription of the ONNX reference on random inputs.
func TestResizeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	shapes := [][]int{{7}, {3, 5}, {1, 2, 4, 5}, {2, 3, 4}}
	scaleSets := [][]float64{{2}, {0.5}, {0.6}, {1.7}, {3}, {0.3}, {1}}
	ctms := []string{"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize", "tf_half_pixel_for_nn"}
	type variant struct {
		mode, nearest string
		a             float64
		exclude, aa   bool
	}
	variants := []variant{
		{mode: "nearest", nearest: "round_prefer_floor"},
		{mode: "nearest", nearest: "round_prefer_ceil"},
		{mode: "nearest", nearest: "floor"},
		{mode: "nearest", nearest: "ceil"},
		{mode: "linear"},
		{mode: "linear", aa: true},
		{mode: "cubic", a: -0.75},
		{mode: "cubic", a: -0.5, exclude: true},
		{mode: "cubic", a: -0.75, aa: true},
		{mode: "cubic", a: -0.5, aa: true, exclude: true},
	}
	count := 0
	for _, shape := range shapes {
		n := tensor.NumElements(shape)
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(rng.Intn(200)-100) / 8
		}
		x := tensor.FromFloat32(data, shape...)
		x64 := make([]float64, n)
		for i, v := range data {
			x64[i] = float64(v)
		}
		for _, ctm := range ctms {
			for _, v := range variants {
				if ctm == "tf_half_pixel_for_nn" && v.mode != "nearest" {
					continue
				}
				// per-axis scales: the axes take scales from the set in turn
				scales := make([]float32, len(shape))
				out := make([]int, len(shape))
				sc64 := make([]float64, len(shape))
				for d := range shape {
					s := scaleSets[(count+d)%len(scaleSets)][0]
					if shape[d] == 1 {
						s = 1
					}
					scales[d] = float32(s)
					sc64[d] = float64(float32(s))
					out[d] = int(sc64[d] * float64(shape[d]))
				}
				count++
				var roi []float64
				var roiT *tensor.Tensor
				if ctm == "tf_crop_and_resize" {
					rv := make([]float32, 2*len(shape))
					for d := range shape {
						rv[d] = float32(rng.Intn(5)-1) / 8
						rv[len(shape)+d] = 1 - float32(rng.Intn(5)-1)/8
					}
					roiT = tensor.FromFloat32(rv, len(rv))
					for _, r := range rv {
						roi = append(roi, float64(r))
					}
				}
				ref := refResize{mode: v.mode, ctm: ctm, nearestMode: v.nearest, a: v.a, exclude: v.exclude, extrap: 0.5, antialias: v.aa}
				want := ref.run(x64, shape, out, sc64, roi)
				attrs := []*ir.Attr{opstest.String("mode", v.mode), opstest.String("coordinate_transformation_mode", ctm),
					opstest.Float("extrapolation_value", 0.5)}
				if v.nearest != "" {
					attrs = append(attrs, opstest.String("nearest_mode", v.nearest))
				}
				if v.mode == "cubic" {
					attrs = append(attrs, opstest.Float("cubic_coeff_a", float32(v.a)))
				}
				if v.exclude {
					attrs = append(attrs, opstest.Int("exclude_outside", 1))
				}
				if v.aa {
					attrs = append(attrs, opstest.Int("antialias", 1))
				}
				opset := int64(18)
				if ctm == "tf_half_pixel_for_nn" {
					opset = 11
				}
				node := opstest.Node("Resize", 4, 1, attrs...)
				got, err := opstest.Exec(node, opset, x, roiT, tensor.FromFloat32(scales, len(scales)), nil)
				name := fmt.Sprintf("%v %s %+v scales %v", shape, ctm, v, scales)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				wt := tensor.New(tensor.Float32, out...)
				for i, w := range want {
					wt.Float32s()[i] = float32(w)
				}
				if err := opstest.Close(got[0], wt, 1e-5, 1e-5); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
	}
}

func TestResizeInfer(t *testing.T) {
	k, err := ops.Prepare(opstest.Node("Resize", 4, 1), 13)
	if err != nil {
		t.Fatal(err)
	}
	x := &ir.Value{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(3), ir.D(20), ir.S("w")}}}
	scales := &ir.Value{Const: f32(1, 1, 2, 2)}
	types, err := k.Infer([]*ir.Value{x, nil, scales, nil})
	if err != nil {
		t.Fatal(err)
	}
	if got := types[0].String(); got != "float32[batch,3,40,?]" {
		t.Errorf("scales: %s", got)
	}
	sizes := &ir.Value{Const: i64(1, 3, 64, 64)}
	types, _ = k.Infer([]*ir.Value{x, nil, nil, sizes})
	if got := types[0].String(); got != "float32[1,3,64,64]" {
		t.Errorf("sizes: %s", got)
	}
	// sizes computed from shapes keep their symbols
	sizes = &ir.Value{ShapeValue: []ir.Dim{ir.S("batch"), ir.D(3), ir.S("h2"), ir.D(8)}}
	types, _ = k.Infer([]*ir.Value{x, nil, nil, sizes})
	if got := types[0].String(); got != "float32[batch,3,h2,8]" {
		t.Errorf("symbolic sizes: %s", got)
	}
	// unknown scales: the rank is kept, the sizes are not known
	types, _ = k.Infer([]*ir.Value{x, nil, {}, nil})
	if got := types[0].String(); got != "float32[?,?,?,?]" {
		t.Errorf("unknown scales: %s", got)
	}
	// unknown rank, constant scales
	types, _ = k.Infer([]*ir.Value{{Type: ir.Type{DType: tensor.Float32}}, nil, scales, nil})
	if got := types[0].String(); got != "float32[?,?,?,?]" {
		t.Errorf("unknown rank: %s", got)
	}
	// opset 18 axes: only the listed axes change
	k, _ = ops.Prepare(opstest.Node("Resize", 4, 1, opstest.Ints("axes", 2, 3)), 18)
	types, _ = k.Infer([]*ir.Value{x, nil, {}, nil})
	if got := types[0].String(); got != "float32[batch,3,?,?]" {
		t.Errorf("axes: %s", got)
	}
	k, _ = ops.Prepare(opstest.Node("Resize", 4, 1, opstest.Ints("axes", 2, 3), opstest.String("keep_aspect_ratio_policy", "not_larger")), 18)
	x2 := &ir.Value{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(3), ir.D(20), ir.D(10)}}}
	types, _ = k.Infer([]*ir.Value{x2, nil, nil, {Const: i64(40, 40)}})
	if got := types[0].String(); got != "float32[batch,3,40,20]" {
		t.Errorf("not_larger: %s", got)
	}
	// Upsample-7
	k, _ = ops.Prepare(opstest.Node("Upsample", 1, 1, opstest.Floats("scales", 1, 1, 2, 2)), 7)
	types, _ = k.Infer([]*ir.Value{x})
	if got := types[0].String(); got != "float32[batch,3,40,?]" {
		t.Errorf("upsample: %s", got)
	}
}

func TestResizeBadInputs(t *testing.T) {
	x := tensor.FromFloat32([]float32{1, 2, 3, 4}, 1, 1, 2, 2)
	for _, tc := range []struct {
		name  string
		node  *ir.Node
		opset int64
		in    []*tensor.Tensor
	}{
		{"no scales or sizes", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, nil, nil}},
		{"both", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, f32(1, 1, 2, 2), i64(1, 1, 4, 4)}},
		{"scales length", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, f32(2, 2), nil}},
		{"sizes length", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, nil, i64(4)}},
		{"zero scale", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, f32(1, 1, 0, 2), nil}},
		{"negative scale", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, f32(1, 1, -2, 2), nil}},
		{"huge scale", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, f32(1, 1, 1e30, 2), nil}},
		{"negative size", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, nil, i64(1, 1, -4, 4)}},
		{"float sizes", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, nil, f32(1, 1, 4, 4)}},
		{"int scales", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{x, nil, i64(1, 1, 2, 2), nil}},
		{"scalar input", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{tensor.Scalar(tensor.Float32, 1), nil, f32(), nil}},
		{"roi length", opstest.Node("Resize", 4, 1, opstest.String("coordinate_transformation_mode", "tf_crop_and_resize")), 13,
			[]*tensor.Tensor{x, f32(0, 1), nil, i64(1, 1, 3, 3)}},
		{"axes range", opstest.Node("Resize", 4, 1, opstest.Ints("axes", 4)), 18, []*tensor.Tensor{x, nil, f32(2), nil}},
		{"empty to non-empty", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{tensor.New(tensor.Float32, 1, 0), nil, nil, i64(1, 3)}},
		{"missing X", opstest.Node("Resize", 4, 1), 13, []*tensor.Tensor{nil, nil, f32(2), nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ops.Prepare(tc.node, tc.opset)
			if err != nil {
				t.Fatal(err)
			}
			_, err = k.Run(&ops.Env{}, tc.in)
			if !errors.Is(err, ops.ErrBadInput) {
				t.Errorf("err = %v, want ErrBadInput", err)
			}
		})
	}
	for _, n := range []*ir.Node{
		opstest.Node("Resize", 4, 1, opstest.String("mode", "area")),
		opstest.Node("Resize", 4, 1, opstest.String("coordinate_transformation_mode", "corners")),
		opstest.Node("Resize", 4, 1, opstest.String("nearest_mode", "up")),
		opstest.Node("Resize", 4, 1, opstest.String("keep_aspect_ratio_policy", "fit")),
		opstest.Node("Resize", 4, 1, opstest.Ints("axes", 1, 1)),
		opstest.Node("Upsample", 1, 1),
	} {
		opset := int64(18)
		if n.OpType == "Upsample" {
			opset = 7
		}
		if _, err := ops.Prepare(n, opset); !errors.Is(err, ops.ErrBadAttr) {
			t.Errorf("%v: err = %v, want ErrBadAttr", n.Attrs, err)
		}
	}
	// an empty output is fine
	got := resize13(t, f32(1, 2), nil, i64(0))
	if got.Len() != 0 {
		t.Errorf("empty output: %v", got)
	}
}

// TestResizeNearestUpsample checks integer enlargements (the YOLO case is
// NCHW, scales [1,1,2,2], nearest, asymmetric) against a plain loop.
func TestResizeNearestUpsample(t *testing.T) {
	const n, c, h, w = 2, 3, 5, 7
	for _, tc := range []struct {
		dt     tensor.DType
		sh, sw int
	}{
		{tensor.Float32, 2, 2}, {tensor.Float32, 3, 1}, {tensor.Float32, 1, 2}, {tensor.Float16, 2, 2},
		{tensor.Int64, 2, 3}, {tensor.Uint8, 4, 4},
	} {
		x := tensor.New(tc.dt, n, c, h, w)
		for i := 0; i < x.Len(); i++ {
			x.SetFloat(i, float64(i%100))
		}
		node := opstest.Node("Resize", 4, 1, opstest.String("coordinate_transformation_mode", "asymmetric"),
			opstest.String("nearest_mode", "floor"))
		got := opstest.Run(t, node, 13, x, nil, f32(1, 1, float32(tc.sh), float32(tc.sw)), nil)[0]
		oh, ow := tc.sh*h, tc.sw*w
		want := tensor.New(tc.dt, n, c, oh, ow)
		for p := 0; p < n*c; p++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					want.SetFloat((p*oh+y)*ow+xx, x.Float((p*h+y/tc.sh)*w+xx/tc.sw))
				}
			}
		}
		if err := opstest.Close(got, want, 0, 0); err != nil {
			t.Errorf("%v x%d x%d: %v", tc.dt, tc.sh, tc.sw, err)
		}
	}
}

func benchResize(b *testing.B, mode string, scales *tensor.Tensor, shape ...int) {
	x := tensor.New(tensor.Float32, shape...)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(i % 251)
	}
	attrs := []*ir.Attr{opstest.String("mode", mode)}
	if mode == "nearest" {
		attrs = append(attrs, opstest.String("coordinate_transformation_mode", "asymmetric"), opstest.String("nearest_mode", "floor"))
	}
	k, err := ops.Prepare(opstest.Node("Resize", 4, 1, attrs...), 13)
	if err != nil {
		b.Fatal(err)
	}
	in := []*tensor.Tensor{x, nil, scales, nil}
	b.SetBytes(int64(4 * x.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := k.Run(&ops.Env{}, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResizeNearest2xYOLO(b *testing.B) {
	benchResize(b, "nearest", f32(1, 1, 2, 2), 1, 256, 20, 20)
}

func BenchmarkResizeNearest2xLarge(b *testing.B) {
	benchResize(b, "nearest", f32(1, 1, 2, 2), 1, 128, 80, 80)
}

func BenchmarkResizeBilinear2x(b *testing.B) {
	benchResize(b, "linear", f32(1, 1, 2, 2), 1, 64, 80, 80)
}

func BenchmarkResizeBilinearDown(b *testing.B) {
	benchResize(b, "linear", f32(1, 1, 0.5, 0.5), 1, 3, 448, 448)
}

// BenchmarkResizeBilinear2xPasses times the generic separable passes on
// the case the fused bilinear path handles, for comparison.
func BenchmarkResizeBilinear2xPasses(b *testing.B) {
	x := tensor.New(tensor.Float32, 1, 64, 80, 80)
	k := &resizeOp{op: "Resize", mode: modeLinear, ctm: ctmHalfPixel, roiIn: 1, scalesIn: 2, sizesIn: 3}
	p, err := k.plan(x, []*tensor.Tensor{x, nil, f32(1, 1, 2, 2), nil})
	if err != nil {
		b.Fatal(err)
	}
	ts := k.tables(p)
	order := passOrder(p, ts)
	dst := make([]float32, tensor.NumElements(p.out))
	b.SetBytes(int64(4 * x.Len()))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		interpolate(x.Float32s(), dst, p, ts, order, 0)
	}
}

// BenchmarkResizeBilinear2xFused times the fused path alone (no output
// allocation), to compare with BenchmarkResizeBilinear2xPasses.
func BenchmarkResizeBilinear2xFused(b *testing.B) {
	x := tensor.New(tensor.Float32, 1, 64, 80, 80)
	k := &resizeOp{op: "Resize", mode: modeLinear, ctm: ctmHalfPixel, roiIn: 1, scalesIn: 2, sizesIn: 3}
	p, err := k.plan(x, []*tensor.Tensor{x, nil, f32(1, 1, 2, 2), nil})
	if err != nil {
		b.Fatal(err)
	}
	ts := k.tables(p)
	dst := make([]float32, tensor.NumElements(p.out))
	b.SetBytes(int64(4 * x.Len()))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		bilinear2D(x.Float32s(), dst, p, ts[2], ts[3])
	}
}

// BenchmarkResizeNearest2xGather times the gather of the YOLO case alone
// (no output allocation).
func BenchmarkResizeNearest2xGather(b *testing.B) {
	x := tensor.New(tensor.Float32, 1, 256, 20, 20)
	k := &resizeOp{op: "Resize", ctm: ctmAsymmetric, nearest: nearestFloor, roiIn: 1, scalesIn: 2, sizesIn: 3}
	p, err := k.plan(x, []*tensor.Tensor{x, nil, f32(1, 1, 2, 2), nil})
	if err != nil {
		b.Fatal(err)
	}
	ts := k.tables(p)
	maps := make([][]int, len(ts))
	for d, t := range ts {
		maps[d] = t.idx
	}
	dst := make([]uint32, tensor.NumElements(p.out))
	b.SetBytes(int64(4 * x.Len()))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		nearestGather(elems[uint32](x), dst, p.in, p.out, maps, 0)
	}
}

// TestResizeParallel runs images large enough to be split among
// goroutines and checks the fast paths against the generic ones.
func TestResizeParallel(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	x := tensor.New(tensor.Float32, 2, 8, 48, 40)
	for i := range x.Float32s() {
		x.Float32s()[i] = rng.Float32()
	}
	for _, sc := range [][]float32{{1, 1, 2, 2}, {1, 1, 1.5, 0.7}, {1, 1, 0.5, 3}} {
		scales := f32(sc...)
		// linear: fused path against the separable passes
		k := &resizeOp{op: "Resize", mode: modeLinear, ctm: ctmHalfPixel, roiIn: 1, scalesIn: 2, sizesIn: 3}
		in := []*tensor.Tensor{x, nil, scales, nil}
		got, err := k.Run(&ops.Env{}, in)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := k.plan(x, in)
		ts := k.tables(p)
		want := tensor.New(tensor.Float32, p.out...)
		interpolate(x.Float32s(), want.Float32s(), p, ts, passOrder(p, ts), 0)
		if err := opstest.Close(got[0], want, 1e-6, 1e-6); err != nil {
			t.Errorf("linear %v: %v", sc, err)
		}
		// nearest: against a loop over the index maps
		k = &resizeOp{op: "Resize", ctm: ctmAsymmetric, nearest: nearestFloor, roiIn: 1, scalesIn: 2, sizesIn: 3}
		got, err = k.Run(&ops.Env{}, in)
		if err != nil {
			t.Fatal(err)
		}
		ts = k.tables(p)
		o := p.out
		want = tensor.New(tensor.Float32, o...)
		i := 0
		for a := 0; a < o[0]; a++ {
			for b := 0; b < o[1]; b++ {
				for y := 0; y < o[2]; y++ {
					for z := 0; z < o[3]; z++ {
						src := ((ts[0].idx[a]*8+ts[1].idx[b])*48+ts[2].idx[y])*40 + ts[3].idx[z]
						want.Float32s()[i] = x.Float32s()[src]
						i++
					}
				}
			}
		}
		if err := opstest.Close(got[0], want, 0, 0); err != nil {
			t.Errorf("nearest %v: %v", sc, err)
		}
	}
}
