package image

import (
	"errors"
	"fmt"
	"math"
	"math/cmplx"
	"math/rand"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// naiveDFT is the defining sum, with x truncated or zero-padded to n.
func naiveDFT(x []complex128, n int, inverse bool) []complex128 {
	out := make([]complex128, n)
	sign := -1.0
	if inverse {
		sign = 1
	}
	for k := range out {
		var s complex128
		for j := 0; j < min(n, len(x)); j++ {
			s += x[j] * cmplx.Rect(1, sign*2*math.Pi*float64(j*k%n)/float64(n))
		}
		if inverse {
			s /= complex(float64(n), 0)
		}
		out[k] = s
	}
	return out
}

func TestFFTPlan(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, n := range []int{1, 2, 3, 8, 10, 64, 65, 97, 100, 128, 1000} {
		x := make([]complex128, n)
		for i := range x {
			x[i] = complex(rng.NormFloat64(), rng.NormFloat64())
		}
		want := naiveDFT(x, n, false)
		got := append([]complex128{}, x...)
		newFFTPlan(n).transform(got, nil)
		for k := range want {
			if cmplx.Abs(got[k]-want[k]) > 1e-9*float64(n) {
				t.Fatalf("n=%d k=%d: %v, want %v", n, k, got[k], want[k])
			}
		}
	}
}

func TestDFT(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	// [batch 2, signal 6, 3 channels, complex]
	shape := []int{2, 6, 3, 2}
	x := tensor.New(tensor.Float32, shape...)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(rng.Intn(17) - 8)
	}
	xv := x.Float32s()
	line := func(b, c int, real bool) []complex128 {
		v := make([]complex128, 6)
		for j := range v {
			e := ((b*6+j)*3 + c) * 2
			v[j] = complex(float64(xv[e]), float64(xv[e+1]))
			if real {
				v[j] = complex(float64(xv[e]), 0)
			}
		}
		return v
	}
	check := func(t *testing.T, got *tensor.Tensor, n, keep int, inverse, real bool) {
		t.Helper()
		if want := fmt.Sprint([]int{2, keep, 3, 2}); fmt.Sprint(got.Shape) != want {
			t.Fatalf("shape %v, want %s", got.Shape, want)
		}
		for b := 0; b < 2; b++ {
			for c := 0; c < 3; c++ {
				want := naiveDFT(line(b, c, real), n, inverse)
				for k := 0; k < keep; k++ {
					e := ((b*keep+k)*3 + c) * 2
					g := complex(got.Float(e), got.Float(e+1))
					if cmplx.Abs(g-want[k]) > 1e-4 {
						t.Fatalf("b%d c%d k%d: %v, want %v", b, c, k, g, want[k])
					}
				}
			}
		}
	}
	t.Run("complex", func(t *testing.T) {
		got := opstest.Run(t, opstest.Node("DFT", 1, 1), 17, x)[0]
		check(t, got, 6, 6, false, false)
	})
	t.Run("inverse", func(t *testing.T) {
		got := opstest.Run(t, opstest.Node("DFT", 1, 1, opstest.Int("inverse", 1)), 17, x)[0]
		check(t, got, 6, 6, true, false)
	})
	t.Run("padded and truncated", func(t *testing.T) {
		for _, n := range []int{4, 9} {
			got := opstest.Run(t, opstest.Node("DFT", 2, 1), 17, x, i64(int64(n)))[0]
			check(t, got, n, n, false, false)
		}
	})
	// the real part alone, as [..., 1]
	xr := tensor.New(tensor.Float32, 2, 6, 3, 1)
	for i := range xr.Float32s() {
		xr.Float32s()[i] = xv[2*i]
	}
	t.Run("real onesided", func(t *testing.T) {
		got := opstest.Run(t, opstest.Node("DFT", 1, 1, opstest.Int("onesided", 1)), 17, xr)[0]
		check(t, got, 6, 4, false, true)
	})
	t.Run("negative axis", func(t *testing.T) {
		got := opstest.Run(t, opstest.Node("DFT", 1, 1, opstest.Int("axis", -3)), 17, xr)[0]
		check(t, got, 6, 6, false, true)
	})
	t.Run("opset 20 axis input", func(t *testing.T) {
		got := opstest.Run(t, opstest.Node("DFT", 3, 1), 20, xr, nil, i64(1))[0]
		check(t, got, 6, 6, false, true)
	})
	t.Run("round trip float64", func(t *testing.T) {
		x64 := tensor.New(tensor.Float64, 1, 100, 2)
		for i := range x64.Float64s() {
			x64.Float64s()[i] = rng.NormFloat64()
		}
		f := opstest.Run(t, opstest.Node("DFT", 1, 1), 17, x64)[0]
		back := opstest.Run(t, opstest.Node("DFT", 1, 1, opstest.Int("inverse", 1)), 17, f)[0]
		opstest.AllClose(t, back, x64, 0, 1e-12)
	})
	// inference
	k, _ := ops.Prepare(opstest.Node("DFT", 2, 1, opstest.Int("onesided", 1)), 17)
	types, err := k.Infer([]*ir.Value{{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("b"), ir.D(16), ir.D(1)}}}, nil})
	if err != nil || types[0].String() != "float32[b,9,2]" {
		t.Errorf("infer: %v %v", types, err)
	}
	types, err = k.Infer([]*ir.Value{{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("b"), ir.D(16), ir.D(1)}}}, {Const: i64(20)}})
	if err != nil || types[0].String() != "float32[b,11,2]" {
		t.Errorf("infer with dft_length: %v %v", types, err)
	}
	for _, tc := range []struct {
		attrs []*ir.Attr
		in    []*tensor.Tensor
	}{
		{nil, []*tensor.Tensor{tensor.New(tensor.Float32, 4, 3)}},
		{nil, []*tensor.Tensor{tensor.New(tensor.Float32, 4)}},
		{[]*ir.Attr{opstest.Int("axis", 3)}, []*tensor.Tensor{xr}},
		{[]*ir.Attr{opstest.Int("axis", 4)}, []*tensor.Tensor{xr}},
		{nil, []*tensor.Tensor{xr, i64(0)}},
		{nil, []*tensor.Tensor{xr, f32(4)}},
		{nil, []*tensor.Tensor{tensor.New(tensor.Int32, 2, 1)}},
	} {
		if err := runErr(t, opstest.Node("DFT", len(tc.in), 1, tc.attrs...), 17, tc.in...); !errors.Is(err, ops.ErrBadInput) {
			t.Errorf("%v %v: err = %v, want ErrBadInput", tc.attrs, tc.in, err)
		}
	}
}

func TestSTFT(t *testing.T) {
	const length, step, fl = 20, 4, 8
	x := tensor.New(tensor.Float32, 1, length, 1)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(i%5) - 2
	}
	win := make([]float32, fl)
	for i := range win {
		win[i] = float32(0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/fl))
	}
	want := func(window []float32, bins int) *tensor.Tensor {
		frames := 1 + (length-fl)/step
		out := tensor.New(tensor.Float32, 1, frames, bins, 2)
		for f := 0; f < frames; f++ {
			seg := make([]complex128, fl)
			for j := range seg {
				w := 1.0
				if window != nil {
					w = float64(window[j])
				}
				seg[j] = complex(float64(x.Float32s()[f*step+j])*w, 0)
			}
			d := naiveDFT(seg, fl, false)
			for k := 0; k < bins; k++ {
				out.Float32s()[(f*bins+k)*2] = float32(real(d[k]))
				out.Float32s()[(f*bins+k)*2+1] = float32(imag(d[k]))
			}
		}
		return out
	}
	got := opstest.Run(t, opstest.Node("STFT", 4, 1), 17, x, i64(step), nil, i64(fl))[0]
	opstest.AllClose(t, got, want(nil, fl/2+1), 1e-5, 1e-5)
	got = opstest.Run(t, opstest.Node("STFT", 3, 1, opstest.Int("onesided", 0)), 17, x, i64(step), f32(win...))[0]
	opstest.AllClose(t, got, want(win, fl), 1e-5, 1e-5)
	// inference
	k, _ := ops.Prepare(opstest.Node("STFT", 4, 1), 17)
	types, err := k.Infer([]*ir.Value{{Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("b"), ir.D(128), ir.D(1)}}},
		{Const: tensor.Scalar(tensor.Int64, 8)}, nil, {Const: tensor.Scalar(tensor.Int64, 16)}})
	if err != nil || types[0].String() != "float32[b,15,9,2]" {
		t.Errorf("infer: %v %v", types, err)
	}
	for _, in := range [][]*tensor.Tensor{
		{x, i64(0), nil, i64(fl)},
		{x, i64(step), nil, i64(length + 1)},
		{x, i64(step), f32(1, 2, 3), i64(fl)},
		{tensor.New(tensor.Float32, length, 1), i64(step)},
		{x, f32(4)},
	} {
		if err := runErr(t, opstest.Node("STFT", len(in), 1), 17, in...); !errors.Is(err, ops.ErrBadInput) {
			t.Errorf("err = %v, want ErrBadInput", err)
		}
	}
}

func TestWindows(t *testing.T) {
	size := tensor.Scalar(tensor.Int64, 4)
	for _, tc := range []struct {
		op       string
		periodic int64
		want     []float64
	}{
		{"HannWindow", 1, []float64{0, 0.5, 1, 0.5}},
		{"HannWindow", 0, []float64{0, 0.75, 0.75, 0}},
		{"HammingWindow", 1, []float64{4.0 / 46, 25.0 / 46, 1, 25.0 / 46}},
		{"BlackmanWindow", 1, []float64{0, 0.34, 1, 0.34}},
		{"BlackmanWindow", 0, []float64{0, 0.63, 0.63, 0}},
	} {
		got := opstest.Run(t, opstest.Node(tc.op, 1, 1, opstest.Int("periodic", tc.periodic),
			opstest.Int("output_datatype", int64(tensor.Float64))), 17, size)[0]
		want := tensor.New(tensor.Float64, 4)
		copy(want.Float64s(), tc.want)
		if err := opstest.Close(got, want, 0, 1e-12); err != nil {
			t.Errorf("%s periodic=%d: %v", tc.op, tc.periodic, err)
		}
	}
	got := opstest.Run(t, opstest.Node("HannWindow", 1, 1), 17, tensor.Scalar(tensor.Int32, 0))[0]
	if got.DType != tensor.Float32 || got.Len() != 0 {
		t.Errorf("empty window: %v", got)
	}
	got = opstest.Run(t, opstest.Node("HannWindow", 1, 1, opstest.Int("periodic", 0)), 17, tensor.Scalar(tensor.Int32, 1))[0]
	if got.Float32s()[0] != 1 {
		t.Errorf("one-point symmetric window: %v", got)
	}
	if err := runErr(t, opstest.Node("HannWindow", 1, 1), 17, tensor.Scalar(tensor.Int64, -1)); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("negative size: %v", err)
	}
	if err := runErr(t, opstest.Node("HannWindow", 1, 1), 17, f32(4)); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("float size: %v", err)
	}
	if _, err := ops.Prepare(opstest.Node("HannWindow", 1, 1, opstest.Int("output_datatype", 8)), 17); !errors.Is(err, ops.ErrBadAttr) {
		t.Errorf("string output: %v", err)
	}
	k, _ := ops.Prepare(opstest.Node("HammingWindow", 1, 1), 17)
	types, _ := k.Infer([]*ir.Value{{Const: size}})
	if types[0].String() != "float32[4]" {
		t.Errorf("infer: %v", types)
	}
}

func TestMelWeightMatrix(t *testing.T) {
	// one filter over 0..5 Hz with dft_length 8 at 8 Hz: the mel points
	// fall on bins 0, 1 and 3 (floor(9 * hz / 8)), a triangle rising to
	// bin 1 and falling to bin 3.
	in := []*tensor.Tensor{tensor.Scalar(tensor.Int64, 1), tensor.Scalar(tensor.Int64, 8), tensor.Scalar(tensor.Int64, 8),
		tensor.Scalar(tensor.Float32, 0), tensor.Scalar(tensor.Float32, 5)}
	got := opstest.Run(t, opstest.Node("MelWeightMatrix", 5, 1), 17, in...)[0]
	opstest.AllClose(t, got, tensor.FromFloat32([]float32{0, 1, 0.5, 0, 0}, 5, 1), 0, 0)
	k, _ := ops.Prepare(opstest.Node("MelWeightMatrix", 5, 1), 17)
	vals := make([]*ir.Value, 5)
	for i, c := range in {
		vals[i] = &ir.Value{Const: c, Type: ops.TypeOf(c)}
	}
	if types, err := k.Infer(vals); err != nil || types[0].String() != "float32[5,1]" {
		t.Errorf("infer: %v %v", types, err)
	}
	bad := append([]*tensor.Tensor{}, in...)
	bad[4] = tensor.Scalar(tensor.Float32, 100) // beyond the Nyquist frequency
	if err := runErr(t, opstest.Node("MelWeightMatrix", 5, 1), 17, bad...); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("edge beyond the spectrum: %v", err)
	}
	if err := runErr(t, opstest.Node("MelWeightMatrix", 5, 1), 17, in[:4]...); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("missing input: %v", err)
	}
}
