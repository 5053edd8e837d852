package image

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Shared helpers of package ops, under the names this package uses.
var (
	badInput   = ops.BadInput
	needInputs = ops.Need[tensor.Tensor]
	needValues = ops.Need[ir.Value]
	input      = ops.Arg[tensor.Tensor]
	value      = ops.Arg[ir.Value]
)

// elems returns the elements of t as a []T sharing its storage.
func elems[T any](t *tensor.Tensor) []T { return ops.Elems[T](t) }

// constOf returns the known constant contents of v, or nil.
func constOf(v *ir.Value) *tensor.Tensor {
	if v == nil {
		return nil
	}
	return v.Const
}

// isNumeric reports whether dt is a real number type (floats, integers).
func isNumeric(dt tensor.DType) bool { return dt.IsFloat() || dt.IsInt() }

// scalarInt reads a scalar or one-element integer tensor.
func scalarInt(op, name string, t *tensor.Tensor) (int64, error) {
	if t.Len() != 1 || t.Rank() > 1 {
		return 0, badInput("%s: %s must be a scalar, got shape %v", op, name, t.Shape)
	}
	if !t.DType.IsInt() {
		return 0, badInput("%s: %s must be an integer, got %v", op, name, t.DType)
	}
	return t.Int(0), nil
}

// scalarFloat reads a scalar or one-element numeric tensor as float64.
func scalarFloat(op, name string, t *tensor.Tensor) (float64, error) {
	if t.Len() != 1 || t.Rank() > 1 {
		return 0, badInput("%s: %s must be a scalar, got shape %v", op, name, t.Shape)
	}
	if !isNumeric(t.DType) {
		return 0, badInput("%s: %s must be a number, got %v", op, name, t.DType)
	}
	return t.Float(0), nil
}

// constScalarInt returns the value of a known constant integer scalar.
func constScalarInt(v *ir.Value) (int64, bool) {
	c := constOf(v)
	if c == nil || c.Len() != 1 || !c.DType.IsInt() {
		return 0, false
	}
	return c.Int(0), true
}

// makeOut allocates an output tensor, turning shape errors into bad input.
func makeOut(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	t, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	return t, nil
}

// toFloat64 returns t's elements as float64 (a copy).
func toFloat64(t *tensor.Tensor) []float64 {
	if t.DType == tensor.Float64 {
		return append([]float64(nil), t.Float64s()...)
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

// toFloat32 returns t's elements as float32 (shared when t is float32).
func toFloat32(t *tensor.Tensor) []float32 { return t.ToFloat32() }

// storeFloat32 writes v into out, converting to out's type.
func storeFloat32(out *tensor.Tensor, v []float32) {
	switch out.DType {
	case tensor.Float32:
		copy(out.Float32s(), v)
	case tensor.Float16:
		h := out.Halfs()
		for i, x := range v {
			h[i] = tensor.Float32ToHalf(x)
		}
	case tensor.BFloat16:
		h := out.BHalfs()
		for i, x := range v {
			h[i] = tensor.Float32ToBF16(x)
		}
	default:
		for i, x := range v {
			out.SetFloat(i, float64(x))
		}
	}
}

// storeFloat64 writes v into out, converting to out's type. Integer types
// truncate toward zero (as a C cast does) and saturate at their range; NaN
// becomes 0.
func storeFloat64(out *tensor.Tensor, v []float64) {
	switch out.DType {
	case tensor.Float64:
		copy(out.Float64s(), v)
	case tensor.Float32:
		f := out.Float32s()
		for i, x := range v {
			f[i] = float32(x)
		}
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64,
		tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		lo, hi := intRange(out.DType)
		for i, x := range v {
			x = math.Trunc(x)
			switch {
			case x != x:
				x = 0
			case x < lo:
				x = lo
			case x > hi:
				x = hi
			}
			out.SetFloat(i, x)
		}
	default:
		for i, x := range v {
			out.SetFloat(i, x)
		}
	}
}

// intRange returns the range of an integer type as float64 bounds that
// convert back without overflow.
func intRange(dt tensor.DType) (lo, hi float64) {
	switch dt {
	case tensor.Int8:
		return math.MinInt8, math.MaxInt8
	case tensor.Int16:
		return math.MinInt16, math.MaxInt16
	case tensor.Int32:
		return math.MinInt32, math.MaxInt32
	case tensor.Int64:
		return -(1 << 63), (1 << 63) - 1024
	case tensor.Uint8:
		return 0, math.MaxUint8
	case tensor.Uint16:
		return 0, math.MaxUint16
	case tensor.Uint32:
		return 0, math.MaxUint32
	case tensor.Uint64:
		return 0, (1 << 64) - 2048
	}
	return math.Inf(-1), math.Inf(1)
}
