package norm

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Shared helpers of package ops, under the names this package uses.
var (
	needValues  = ops.Need[ir.Value]
	needTensors = ops.Need[tensor.Tensor]
	normAxis    = ops.NormAxis
)

// input returns in[i], or nil when it is absent.
func input[T any](in []*T, i int) *T { return ops.Arg(in, i) }

// rowGrain is the minimum number of elements one goroutine of a row-wise
// kernel handles (rows are grouped until they reach it).
const rowGrain = 1 << 12

// isFloatType reports whether dt is one of the float types the float-only
// operators accept.
func isFloatType(dt tensor.DType) bool {
	return dt == tensor.Float32 || dt == tensor.Float64 || dt == tensor.Float16 || dt == tensor.BFloat16
}

// needFloat checks that t holds floats.
func needFloat(op, what string, t *tensor.Tensor) error {
	if !isFloatType(t.DType) {
		return fmt.Errorf("%w: %s %s is %v, want a float type", ops.ErrBadInput, op, what, t.DType)
	}
	return nil
}

// product returns the product of dims (1 for none).
func product(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

// float64s returns t's elements as float64 (shared for float64 tensors).
func float64s(t *tensor.Tensor) []float64 {
	if t.DType == tensor.Float64 {
		return t.Float64s()
	}
	out := make([]float64, t.Len())
	switch t.DType {
	case tensor.Float32:
		for i, v := range t.Float32s() {
			out[i] = float64(v)
		}
	default:
		for i := range out {
			out[i] = t.Float(i)
		}
	}
	return out
}

// float32s returns t's elements as float32 (shared for float32 tensors).
func float32s(t *tensor.Tensor) []float32 {
	switch t.DType {
	case tensor.Float32:
		return t.Float32s()
	case tensor.Float16:
		out := make([]float32, t.Len())
		for i, h := range t.Halfs() {
			out[i] = tensor.HalfToFloat32(h)
		}
		return out
	case tensor.BFloat16:
		out := make([]float32, t.Len())
		for i, h := range t.BHalfs() {
			out[i] = tensor.BF16ToFloat32(h)
		}
		return out
	}
	return t.ToFloat32()
}

// floatOut is an output tensor of a float type with a float32 or float64
// buffer to compute into: the tensor's own storage for float32 and float64,
// a scratch buffer for float16 and bfloat16 that done() rounds into it.
type floatOut struct {
	t   *tensor.Tensor
	f32 []float32
	f64 []float64
}

// newFloatOut makes an output of type dt and the given shape with
// ops.NewOutput (nil env: a zeroed tensor; otherwise the caller must write
// every element).
func newFloatOut(env *ops.Env, dt tensor.DType, shape []int) (floatOut, error) {
	t, err := ops.NewOutput(env, dt, shape)
	if err != nil {
		return floatOut{}, err
	}
	o := floatOut{t: t}
	switch dt {
	case tensor.Float32:
		o.f32 = t.Float32s()
	case tensor.Float64:
		o.f64 = t.Float64s()
	case tensor.Float16, tensor.BFloat16:
		o.f32 = make([]float32, t.Len())
	default:
		return floatOut{}, fmt.Errorf("%w: %v output, want a float type", ops.ErrBadInput, dt)
	}
	return o, nil
}

// done rounds a scratch buffer into the tensor and returns it.
func (o *floatOut) done() *tensor.Tensor {
	switch o.t.DType {
	case tensor.Float16:
		h := o.t.Halfs()
		for i, v := range o.f32 {
			h[i] = tensor.Float32ToHalf(v)
		}
	case tensor.BFloat16:
		h := o.t.BHalfs()
		for i, v := range o.f32 {
			h[i] = tensor.Float32ToBF16(v)
		}
	}
	return o.t
}

// onesFrom returns a copy of shape s with the dims from axis on set to 1,
// or nil when s is nil.
func onesFrom(s ir.Shape, axis int) ir.Shape {
	if s == nil {
		return nil
	}
	out := s.Clone()
	for i := axis; i < len(out); i++ {
		out[i] = ir.D(1)
	}
	return out
}

// inferAxis normalizes axis against shape s for Infer; ok is false when the
// rank is unknown.
func inferAxis(op string, axis int64, s ir.Shape) (int, bool, error) {
	if s == nil {
		return 0, false, nil
	}
	a, err := normAxis(op, axis, len(s))
	return a, err == nil, err
}

// expf returns e**x for float32 x with about one ulp of error, faster than
// math.Exp (Cephes' expf: range reduction by ln 2 and a degree-6 polynomial).
func expf(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	}
	const (
		log2e = 1.44269504088896341
		ln2Hi = 0.693359375
		ln2Lo = -2.12194440e-4
	)
	// Round x*log2e to the nearest integer n by adding 1.5*2**23: the
	// integer lands in the low mantissa bits.
	const magic = 12582912
	t := x*log2e + magic
	n := t - magic
	r := x - n*ln2Hi - n*ln2Lo
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	y := p*r*r + r + 1
	e := int32(math.Float32bits(t)) - 0x4B400000
	if e < -126 {
		y *= 1.1754943508222875e-38 // 2**-126
		e += 126
	} else if e > 127 {
		y *= 1.7014118346046923e+38 // 2**127
		e -= 127
	}
	return y * math.Float32frombits(uint32(e+127)<<23)
}
