package math

import (
	"errors"
	"math"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

var unaryInput = []float64{-2.5, -1, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 1.5, 3}

func TestUnaryFloat(t *testing.T) {
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, c := range []struct {
		op string
		f  func(float64) float64
		in []float64
	}{
		{"Abs", math.Abs, unaryInput},
		{"Neg", func(x float64) float64 { return -x }, unaryInput},
		{"Exp", math.Exp, unaryInput},
		{"Log", math.Log, []float64{0.1, 0.5, 1, 2, 100}},
		{"Sqrt", math.Sqrt, []float64{0, 0.25, 2, 9}},
		{"Reciprocal", func(x float64) float64 { return 1 / x }, []float64{-2, 0.5, 4}},
		{"Floor", math.Floor, unaryInput},
		{"Ceil", math.Ceil, unaryInput},
		{"Round", math.RoundToEven, []float64{0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6}},
		{"Sign", sign, unaryInput},
		{"Sin", math.Sin, unaryInput},
		{"Cos", math.Cos, unaryInput},
		{"Tan", math.Tan, unaryInput},
		{"Asin", math.Asin, []float64{-1, -0.5, 0, 0.5, 1}},
		{"Acos", math.Acos, []float64{-1, -0.5, 0, 0.5, 1}},
		{"Atan", math.Atan, unaryInput},
		{"Sinh", math.Sinh, unaryInput},
		{"Cosh", math.Cosh, unaryInput},
		{"Asinh", math.Asinh, unaryInput},
		{"Acosh", math.Acosh, []float64{1, 1.5, 10}},
		{"Atanh", math.Atanh, []float64{-0.5, 0, 0.5}},
		{"Erf", math.Erf, unaryInput},
		{"Sigmoid", sig, unaryInput},
		{"Tanh", math.Tanh, unaryInput},
		{"Relu", func(x float64) float64 { return math.Max(x, 0) }, unaryInput},
		{"Softplus", func(x float64) float64 { return math.Log(1 + math.Exp(x)) }, unaryInput},
		{"Softsign", func(x float64) float64 { return x / (1 + math.Abs(x)) }, unaryInput},
		{"Mish", func(x float64) float64 { return x * math.Tanh(math.Log(1+math.Exp(x))) }, unaryInput},
		{"HardSwish", func(x float64) float64 { return x * math.Max(0, math.Min(1, x/6+0.5)) }, []float64{-4, -3, -1, 0, 1, 3, 4}},
		{"LeakyRelu", func(x float64) float64 { return math.Max(x, 0.01*x) }, unaryInput},
		{"Elu", func(x float64) float64 { return map[bool]float64{true: math.Exp(x) - 1, false: x}[x < 0] }, unaryInput},
		{"Selu", func(x float64) float64 {
			if x > 0 {
				return 1.0507009873554805 * x
			}
			return 1.0507009873554805 * 1.6732632423543772 * (math.Exp(x) - 1)
		}, unaryInput},
		{"Celu", func(x float64) float64 { return math.Max(0, x) + math.Min(0, math.Exp(x)-1) }, unaryInput},
		{"ThresholdedRelu", func(x float64) float64 { return map[bool]float64{true: x, false: 0}[x > 1] }, unaryInput},
		{"HardSigmoid", func(x float64) float64 { return math.Max(0, math.Min(1, 0.2*x+0.5)) }, unaryInput},
		{"Gelu", func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }, unaryInput},
		{"Shrink", func(x float64) float64 {
			return map[bool]float64{true: 0, false: x}[math.Abs(x) <= 0.5]
		}, unaryInput},
	} {
		for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16} {
			x := mk(dt, sh(len(c.in)), c.in...)
			want := tensor.New(dt, len(c.in))
			for i := range c.in {
				want.SetFloat(i, c.f(x.Float(i)))
			}
			got := opstest.Run(t, opstest.Node(c.op, 1, 1), 20, x)[0]
			rtol := 2e-6
			switch dt {
			case tensor.Float16:
				rtol = 1e-3
			case tensor.BFloat16:
				rtol = 8e-3
			}
			if err := opstest.Close(got, want, rtol, 1e-6); err != nil {
				t.Errorf("%s %v: %v", c.op, dt, err)
			}
		}
	}
}

func TestUnaryInt(t *testing.T) {
	for _, c := range []struct {
		op        string
		dt        tensor.DType
		in, want  []float64
		attrs     []*ir.Attr
		opsetFrom int64
	}{
		{"Abs", tensor.Int8, []float64{-3, 0, 5}, []float64{3, 0, 5}, nil, 13},
		{"Abs", tensor.Uint16, []float64{3, 0, 65535}, []float64{3, 0, 65535}, nil, 13},
		{"Neg", tensor.Int32, []float64{-3, 0, 5}, []float64{3, 0, -5}, nil, 13},
		{"Sign", tensor.Int64, []float64{-3, 0, 5}, []float64{-1, 0, 1}, nil, 13},
		{"Sign", tensor.Uint8, []float64{3, 0}, []float64{1, 0}, nil, 13},
		{"Relu", tensor.Int8, []float64{-3, 0, 5}, []float64{0, 0, 5}, nil, 14},
		{"Shrink", tensor.Int32, []float64{-3, -1, 0, 1, 3}, []float64{-1, 0, 0, 0, 1}, []*ir.Attr{opstest.Float("lambd", 1.5), opstest.Float("bias", 2)}, 9},
	} {
		got := opstest.Run(t, opstest.Node(c.op, 1, 1, c.attrs...), c.opsetFrom, mk(c.dt, sh(len(c.in)), c.in...))[0]
		if err := opstest.Close(got, mk(c.dt, sh(len(c.want)), c.want...), 0, 0); err != nil {
			t.Errorf("%s %v: %v", c.op, c.dt, err)
		}
	}
}

func TestActivationAttrs(t *testing.T) {
	x := f32(sh(5), -2, -0.5, 0, 0.5, 2)
	for _, c := range []struct {
		node *ir.Node
		want []float64
	}{
		{opstest.Node("LeakyRelu", 1, 1, opstest.Float("alpha", 0.5)), []float64{-1, -0.25, 0, 0.5, 2}},
		{opstest.Node("Elu", 1, 1, opstest.Float("alpha", 2)), []float64{2 * (math.Exp(-2) - 1), 2 * (math.Exp(-0.5) - 1), 0, 0.5, 2}},
		{opstest.Node("ThresholdedRelu", 1, 1, opstest.Float("alpha", 0.4)), []float64{0, 0, 0, 0.5, 2}},
		{opstest.Node("HardSigmoid", 1, 1, opstest.Float("alpha", 0.5), opstest.Float("beta", 0.6)), []float64{0, 0.35, 0.6, 0.85, 1}},
		{opstest.Node("Celu", 1, 1, opstest.Float("alpha", 2)), []float64{2 * (math.Exp(-1) - 1), 2 * (math.Exp(-0.25) - 1), 0, 0.5, 2}},
		{opstest.Node("Selu", 1, 1, opstest.Float("alpha", 2), opstest.Float("gamma", 3)), []float64{6 * (math.Exp(-2) - 1), 6 * (math.Exp(-0.5) - 1), 0, 1.5, 6}},
		{opstest.Node("Shrink", 1, 1, opstest.Float("lambd", 1), opstest.Float("bias", 0.5)), []float64{-1.5, 0, 0, 0, 1.5}},
		{opstest.Node("Gelu", 1, 1, opstest.String("approximate", "tanh")), []float64{
			-0.04540230591222, -0.15428599017, 0, 0.34571400982, 1.95459769409}},
	} {
		got := opstest.Run(t, c.node, 20, x)[0]
		if err := opstest.Close(got, f32(sh(5), c.want...), 1e-6, 1e-7); err != nil {
			t.Errorf("%s %v: %v", c.node.OpType, c.node.Attrs, err)
		}
	}
}

// TestFloat32Kernels runs the fast float32 kernels over a big tensor (split
// over goroutines) against the float64 functions.
func TestFloat32Kernels(t *testing.T) {
	x := randTensor(3, 50000)
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, c := range []struct {
		op string
		f  func(float64) float64
	}{
		{"Sigmoid", sig}, {"Tanh", math.Tanh}, {"Erf", math.Erf},
		{"Relu", func(x float64) float64 { return math.Max(x, 0) }},
		{"Gelu", func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }},
	} {
		got := opstest.Run(t, opstest.Node(c.op, 1, 1), 20, x)[0]
		want := tensor.New(tensor.Float32, x.Shape...)
		for i, v := range x.Float32s() {
			want.Float32s()[i] = float32(c.f(float64(v)))
		}
		// Gelu's 1+erf(x) cancels for negative x: absolute accuracy
		opstest.AllClose(t, got, want, 1e-6, 1e-6)
	}
	nan := f32(sh(3), math.NaN(), math.Inf(1), math.Inf(-1))
	for _, c := range []struct {
		op   string
		want []float64
	}{
		{"Sigmoid", []float64{math.NaN(), 1, 0}},
		{"Tanh", []float64{math.NaN(), 1, -1}},
		{"Erf", []float64{math.NaN(), 1, -1}},
		{"Relu", []float64{math.NaN(), math.Inf(1), 0}},
	} {
		got := opstest.Run(t, opstest.Node(c.op, 1, 1), 20, nan)[0]
		opstest.AllClose(t, got, f32(sh(3), c.want...), 0, 0)
	}
}

func TestClip(t *testing.T) {
	x := f32(sh(5), -3, -1, 0, 1, 3)
	scalar := func(dt tensor.DType, v float64) *tensor.Tensor { return mk(dt, sh(), v) }
	for _, c := range []struct {
		name  string
		node  *ir.Node
		opset int64
		in    []*tensor.Tensor
		want  *tensor.Tensor
	}{
		{"attrs", opstest.Node("Clip", 1, 1, opstest.Float("min", -1), opstest.Float("max", 2)), 6, []*tensor.Tensor{x}, f32(sh(5), -1, -1, 0, 1, 2)},
		{"attr min", opstest.Node("Clip", 1, 1, opstest.Float("min", 0)), 6, []*tensor.Tensor{x}, f32(sh(5), 0, 0, 0, 1, 3)},
		{"inputs", opstest.Node("Clip", 3, 1), 11, []*tensor.Tensor{x, scalar(tensor.Float32, -1), scalar(tensor.Float32, 2)}, f32(sh(5), -1, -1, 0, 1, 2)},
		{"max only", opstest.Node("Clip", 3, 1), 13, []*tensor.Tensor{x, nil, scalar(tensor.Float32, 0)}, f32(sh(5), -3, -1, 0, 0, 0)},
		{"none", opstest.Node("Clip", 1, 1), 13, []*tensor.Tensor{x}, x},
		{"min > max", opstest.Node("Clip", 3, 1), 13, []*tensor.Tensor{x, scalar(tensor.Float32, 2), scalar(tensor.Float32, 1)}, f32(sh(5), 1, 1, 1, 1, 1)},
		{"int8", opstest.Node("Clip", 2, 1), 13, []*tensor.Tensor{mk(tensor.Int8, sh(3), -128, 5, 127), scalar(tensor.Int8, 0)}, mk(tensor.Int8, sh(3), 0, 5, 127)},
		{"uint64", opstest.Node("Clip", 3, 1), 13, []*tensor.Tensor{mk(tensor.Uint64, sh(3), 0, 5, 10), scalar(tensor.Uint64, 2), scalar(tensor.Uint64, 6)}, mk(tensor.Uint64, sh(3), 2, 5, 6)},
		{"float16", opstest.Node("Clip", 3, 1), 13, []*tensor.Tensor{mk(tensor.Float16, sh(3), -2, 0.5, 2), scalar(tensor.Float16, -1), scalar(tensor.Float16, 1)}, mk(tensor.Float16, sh(3), -1, 0.5, 1)},
		{"nan", opstest.Node("Clip", 3, 1), 13, []*tensor.Tensor{f32(sh(1), math.NaN()), scalar(tensor.Float32, -1), scalar(tensor.Float32, 1)}, f32(sh(1), math.NaN())},
	} {
		got := opstest.Run(t, c.node, c.opset, c.in...)[0]
		if err := opstest.Close(got, c.want, 0, 0); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestPRelu(t *testing.T) {
	x := f32(sh(2, 3, 2), -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6)
	// opset 6: a 1-D slope of C values is per channel
	got := opstest.Run(t, opstest.Node("PRelu", 2, 1), 6, x, f32(sh(3), 0.1, 0.2, 0.3))[0]
	opstest.AllClose(t, got, f32(sh(2, 3, 2), -0.1, 1, -0.4, 2, -0.9, 3, -0.4, 4, -1, 5, -1.8, 6), 1e-6, 0)
	// opset 16: numpy broadcasting of the slope
	got = opstest.Run(t, opstest.Node("PRelu", 2, 1), 16, x, f32(sh(3, 1), 0.1, 0.2, 0.3))[0]
	opstest.AllClose(t, got, f32(sh(2, 3, 2), -0.1, 1, -0.4, 2, -0.9, 3, -0.4, 4, -1, 5, -1.8, 6), 1e-6, 0)
	got = opstest.Run(t, opstest.Node("PRelu", 2, 1), 16, x, f32(sh(2), 0.5, 0.25))[0]
	opstest.AllClose(t, got, f32(sh(2, 3, 2), -0.5, 1, -1, 2, -1.5, 3, -2, 4, -2.5, 5, -3, 6), 1e-6, 0)
	got = opstest.Run(t, opstest.Node("PRelu", 2, 1), 16, mk(tensor.Int32, sh(2), -4, 4), mk(tensor.Int32, sh(1), 3))[0]
	opstest.AllClose(t, got, mk(tensor.Int32, sh(2), -12, 4), 0, 0)
}

func TestCast(t *testing.T) {
	to := func(dt tensor.DType) *ir.Node { return opstest.Node("Cast", 1, 1, opstest.Int("to", int64(dt))) }
	for _, c := range []struct {
		name     string
		in, want *tensor.Tensor
	}{
		{"f32 to i32", f32(sh(4), 1.9, -1.9, 0, 100.5), mk(tensor.Int32, sh(4), 1, -1, 0, 100)},
		{"i64 to i8 wraps", mk(tensor.Int64, sh(3), 127, 128, -129), mk(tensor.Int8, sh(3), 127, -128, 127)},
		{"f32 to bool", f32(sh(3), 0, 0.1, math.NaN()), mk(tensor.Bool, sh(3), 0, 1, 1)},
		{"bool to f64", mk(tensor.Bool, sh(2), 1, 0), mk(tensor.Float64, sh(2), 1, 0)},
		{"f32 to f16", f32(sh(3), 1, 0.1, 65504), mk(tensor.Float16, sh(3), 1, 0.1, 65504)},
		{"f16 to f64", mk(tensor.Float16, sh(2), 0.5, -2), mk(tensor.Float64, sh(2), 0.5, -2)},
		{"u8 to f32", mk(tensor.Uint8, sh(2), 255, 0), f32(sh(2), 255, 0)},
		{"f32 to bf16 truncates", f32(sh(2), 1.00390625+1.0/1024, math.NaN()), mk(tensor.BFloat16, sh(2), 1, math.NaN())},
		{"f32 to string", f32(sh(10), 1, 0.1, -2.5, 1e-5, 1.5e16, 123456.7, 0, 1e16, 0.0001, math.Inf(-1)),
			strs(sh(10), "1.0", "0.1", "-2.5", "1e-05", "1.5e+16", "123456.7", "0.0", "1e+16", "1e-04", "-inf")},
		{"f64 to string", mk(tensor.Float64, sh(3), 0.1, 1.0/3, math.NaN()), strs(sh(3), "0.1", "0.3333333333333333", "nan")},
		{"f16 to string", mk(tensor.Float16, sh(2), 0.1, 1000), strs(sh(2), "0.1", "1000.0")},
		{"i32 to string", mk(tensor.Int32, sh(2), -7, 42), strs(sh(2), "-7", "42")},
		{"bool to string", mk(tensor.Bool, sh(2), 1, 0), strs(sh(2), "True", "False")},
		{"string to f32", strs(sh(6), "0.5", "NaN", "INF", "-INF", "+INF", " 3 "), f32(sh(6), 0.5, math.NaN(), math.Inf(1), math.Inf(-1), math.Inf(1), 3)},
		{"string to i64", strs(sh(3), "9007199254740993", "-4", "2.7"), mk(tensor.Int64, sh(3), 9007199254740993, -4, 2)},
		{"string to u8", strs(sh(2), "255", "7"), mk(tensor.Uint8, sh(2), 255, 7)},
	} {
		got := opstest.Run(t, to(c.want.DType), 19, c.in)[0]
		if err := opstest.Close(got, c.want, 0, 0); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// CastLike takes the target type from its second input
	got := opstest.Run(t, opstest.Node("CastLike", 2, 1), 15, f32(sh(2), 1.5, 2), mk(tensor.Int64, sh(1), 0))[0]
	opstest.AllClose(t, got, mk(tensor.Int64, sh(2), 1, 2), 0, 0)
	// float64 to float16 rounds once
	x := mk(tensor.Float64, sh(1), 1+1.0/2048+1.0/(1<<40)) // just above a tie: rounds up
	got = opstest.Run(t, to(tensor.Float16), 13, x)[0]
	opstest.AllClose(t, got, mk(tensor.Float16, sh(1), 1+1.0/1024), 0, 0)
}

func TestFormatFloat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		kind int
		want string
	}{
		{0.9767611026763916, 32, "0.9767611"},
		{0.039187792688608170, 32, "0.039187793"},
		{math.Copysign(0, -1), 32, "-0.0"},
		{100, 64, "100.0"},
		{1e22, 64, "1e+22"},
		{1.25e-7, 64, "1.25e-07"},
		{123456789012, 64, "123456789012.0"},
		{0.00012, 32, "0.00012"},
	} {
		if got := formatFloat(c.v, c.kind); got != c.want {
			t.Errorf("formatFloat(%g, %d) = %q, want %q", c.v, c.kind, got, c.want)
		}
	}
}

func TestDropout(t *testing.T) {
	x := f32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	allTrue := mk(tensor.Bool, sh(2, 3), 1, 1, 1, 1, 1, 1)
	for _, c := range []struct {
		name  string
		node  *ir.Node
		opset int64
		in    []*tensor.Tensor
		mask  *tensor.Tensor
	}{
		{"opset 6", opstest.Node("Dropout", 1, 2, opstest.Int("is_test", 0), opstest.Float("ratio", 0.3)), 6, []*tensor.Tensor{x}, f32(sh(2, 3), 1, 1, 1, 1, 1, 1)},
		{"opset 10", opstest.Node("Dropout", 1, 2, opstest.Float("ratio", 0.3)), 10, []*tensor.Tensor{x}, allTrue},
		{"opset 13", opstest.Node("Dropout", 2, 2), 13, []*tensor.Tensor{x, f32(sh(), 0.9)}, allTrue},
		{"training ratio 0", opstest.Node("Dropout", 3, 2), 13, []*tensor.Tensor{x, f32(sh(), 0), mk(tensor.Bool, sh(), 1)}, allTrue},
		{"training false", opstest.Node("Dropout", 3, 2), 13, []*tensor.Tensor{x, nil, mk(tensor.Bool, sh(), 0)}, allTrue},
	} {
		out := opstest.Run(t, c.node, c.opset, c.in...)
		opstest.AllClose(t, out[0], x, 0, 0)
		if err := opstest.Close(out[1], c.mask, 0, 0); err != nil {
			t.Errorf("%s: mask: %v", c.name, err)
		}
	}
	// training: kept elements are scaled, the seed makes it repeatable
	big := randTensor(10000)
	n := opstest.Node("Dropout", 3, 2, opstest.Int("seed", 7))
	k, err := ops.Prepare(n, 13)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.(ops.NonDeterministic); !ok {
		t.Error("a training Dropout must be NonDeterministic")
	}
	out := opstest.Run(t, n, 13, big, f32(sh(), 0.25), mk(tensor.Bool, sh(), 1))
	out2 := opstest.Run(t, n, 13, big, f32(sh(), 0.25), mk(tensor.Bool, sh(), 1))
	opstest.AllClose(t, out[0], out2[0], 0, 0)
	kept := 0
	for i, keep := range out[1].Bools() {
		y, v := out[0].Float32s()[i], big.Float32s()[i]
		if keep {
			kept++
			if math.Abs(float64(y-v/0.75)) > 1e-6 {
				t.Fatalf("kept element %d: %g, want %g", i, y, v/0.75)
			}
		} else if y != 0 {
			t.Fatalf("dropped element %d: %g", i, y)
		}
	}
	if kept < 7200 || kept > 7800 {
		t.Errorf("kept %d of 10000 at ratio 0.25", kept)
	}
}

func TestDet(t *testing.T) {
	got := opstest.Run(t, opstest.Node("Det", 1, 1), 11, f32(sh(2, 2), 1, 2, 3, 4))[0]
	opstest.AllClose(t, got, f32(sh(), -2), 1e-6, 0)
	x := mk(tensor.Float64, sh(3, 3, 3),
		2, 0, 0, 0, 3, 0, 0, 0, 4, // 24
		0, 1, 0, 1, 0, 0, 0, 0, 1, // -1 (a swap)
		1, 2, 3, 2, 4, 6, 1, 1, 1) // singular
	got = opstest.Run(t, opstest.Node("Det", 1, 1), 11, x)[0]
	opstest.AllClose(t, got, mk(tensor.Float64, sh(3), 24, -1, 0), 1e-12, 1e-12)
	got = opstest.Run(t, opstest.Node("Det", 1, 1), 11, f32(sh(2, 0, 0)))[0]
	opstest.AllClose(t, got, f32(sh(2), 1, 1), 0, 0)
}

func TestStringNormalizer(t *testing.T) {
	x := strs(sh(1, 4), "Monday", "tuesday", "MONDAY", "Wednesday")
	for _, c := range []struct {
		attrs []*ir.Attr
		want  *tensor.Tensor
	}{
		{[]*ir.Attr{strAttr("stopwords", "monday"), opstest.String("case_change_action", "UPPER")}, strs(sh(1, 2), "TUESDAY", "WEDNESDAY")},
		{[]*ir.Attr{strAttr("stopwords", "monday"), opstest.Int("is_case_sensitive", 1)}, strs(sh(1, 4), "Monday", "tuesday", "MONDAY", "Wednesday")},
		{[]*ir.Attr{opstest.String("case_change_action", "LOWER")}, strs(sh(1, 4), "monday", "tuesday", "monday", "wednesday")},
		{[]*ir.Attr{strAttr("stopwords", "monday", "tuesday", "wednesday")}, strs(sh(1, 1), "")},
	} {
		got := opstest.Run(t, opstest.Node("StringNormalizer", 1, 1, c.attrs...), 10, x)[0]
		if err := opstest.Close(got, c.want, 0, 0); err != nil {
			t.Errorf("%v: %v", c.attrs, err)
		}
	}
	got := opstest.Run(t, opstest.Node("StringNormalizer", 1, 1, strAttr("stopwords", "b")), 10, strs(sh(3), "a", "B", "c"))[0]
	opstest.AllClose(t, got, strs(sh(2), "a", "c"), 0, 0)
}

func TestTfIdf(t *testing.T) {
	ints := func(name string, v ...int64) *ir.Attr { return opstest.Ints(name, v...) }
	base := func(mode string, minN, maxN, skip int64, extra ...*ir.Attr) *ir.Node {
		attrs := append([]*ir.Attr{opstest.String("mode", mode), opstest.Int("min_gram_length", minN),
			opstest.Int("max_gram_length", maxN), opstest.Int("max_skip_count", skip),
			ints("ngram_counts", 0, 4), ints("ngram_indexes", 0, 1, 2, 3, 4, 5, 6)}, extra...)
		return opstest.Node("TfIdfVectorizer", 1, 1, attrs...)
	}
	pool := ints("pool_int64s", 2, 3, 5, 4, 5, 6, 7, 8, 6, 7)
	x := mk(tensor.Int32, sh(12), 1, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8)
	w := opstest.Floats("weights", 1, 2, 3, 4, 5, 6, 7)
	for _, c := range []struct {
		node *ir.Node
		x    *tensor.Tensor
		want *tensor.Tensor
	}{
		{base("TF", 1, 2, 5, pool), x, f32(sh(7), 0, 3, 1, 0, 1, 3, 1)},
		{base("TF", 2, 2, 0, pool), x, f32(sh(7), 0, 0, 0, 0, 1, 1, 1)},
		{base("IDF", 1, 2, 5, pool, w), x, f32(sh(7), 0, 2, 3, 0, 5, 6, 7)},
		{base("TFIDF", 1, 2, 5, pool, w), x, f32(sh(7), 0, 6, 3, 0, 5, 18, 7)},
		{base("TF", 1, 2, 5, pool), mk(tensor.Int64, sh(2, 6), 1, 1, 3, 3, 3, 7, 8, 6, 7, 5, 6, 8),
			f32(sh(2, 7), 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1)},
		{base("TF", 1, 2, 0, &ir.Attr{Name: "pool_strings", Type: ir.AttrStrings, Strings: []string{"a", "b", "c", "d", "a", "b", "b", "c", "x", "y"}}),
			strs(sh(5), "a", "b", "c", "a", "b"), f32(sh(7), 2, 2, 1, 0, 2, 1, 0)},
	} {
		got := opstest.Run(t, c.node, 9, c.x)[0]
		if err := opstest.Close(got, c.want, 0, 0); err != nil {
			t.Errorf("%v: %v", c.node.Attrs["mode"].S, err)
		}
	}
	k, err := ops.Prepare(base("TF", 1, 2, 5, pool), 9)
	if err != nil {
		t.Fatal(err)
	}
	types, err := k.Infer([]*ir.Value{{Type: ir.Type{DType: tensor.Int64, Shape: ir.Shape{ir.S("batch"), ir.D(6)}}}})
	if err != nil || types[0].String() != "float32[batch,7]" {
		t.Errorf("infer: %v %v", types, err)
	}
	for _, n := range []*ir.Node{
		base("TF", 1, 2, 5), // no pool
		base("TF", 1, 2, 5, pool, ints("pool_int64s", 1)), // (overrides pool: 1 item for counts 0,4)
		base("TF", 0, 2, 5, pool),                         // min_gram_length 0
		base("TF", 1, 2, 5, pool, opstest.Floats("weights", 1)),
		base("TF", 1, 2, 5, pool, ints("ngram_indexes", 0, 1)),
		base("TF", 1, 2, 5, pool, ints("ngram_counts", 0, 11)),
	} {
		if _, err := ops.Prepare(n, 9); !errors.Is(err, ops.ErrBadAttr) {
			t.Errorf("%v: got %v, want ErrBadAttr", n.Attrs, err)
		}
	}
	if _, err := opstest.Exec(base("TF", 1, 2, 5, pool), 9, strs(sh(1), "a")); !errors.Is(err, ops.ErrBadInput) {
		t.Errorf("string input for an int pool: %v", err)
	}
}
