package nn

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// elems returns the elements of t as a []T sharing its storage. The caller
// picks T to match t.DType (float16 and bfloat16 as uint16).
func elems[T any](t *tensor.Tensor) []T {
	if len(t.Data) == 0 {
		return []T{}
	}
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(&t.Data[0])), len(t.Data)/int(unsafe.Sizeof(z)))
}

// badInput returns an error wrapping ops.ErrBadInput.
func badInput(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ops.ErrBadInput, fmt.Sprintf(format, args...))
}

// input returns in[i], or nil when it is absent.
func input(in []*tensor.Tensor, i int) *tensor.Tensor {
	if i < len(in) {
		return in[i]
	}
	return nil
}

// value returns in[i], or nil when it is absent.
func value(in []*ir.Value, i int) *ir.Value {
	if i < len(in) {
		return in[i]
	}
	return nil
}

// needInputs checks that the first n inputs are present.
func needInputs(op string, in []*tensor.Tensor, n int) error {
	if len(in) < n {
		return badInput("%s takes at least %d inputs, got %d", op, n, len(in))
	}
	for i := 0; i < n; i++ {
		if in[i] == nil {
			return badInput("%s: input %d is missing", op, i)
		}
	}
	return nil
}

// needValues checks that the first n input values are present.
func needValues(op string, in []*ir.Value, n int) error {
	if len(in) < n {
		return badInput("%s takes at least %d inputs, got %d", op, n, len(in))
	}
	for i := 0; i < n; i++ {
		if in[i] == nil {
			return badInput("%s: input %d is missing", op, i)
		}
	}
	return nil
}

// isFloat16ish reports whether dt is stored as 16-bit floats.
func isFloat16ish(dt tensor.DType) bool { return dt == tensor.Float16 || dt == tensor.BFloat16 }

// toFloat32 returns t's elements as float32 (a copy unless t is float32).
func toFloat32(t *tensor.Tensor) []float32 { return t.ToFloat32() }

// fromFloat32 stores v into a new tensor of type dt and the given shape.
func fromFloat32(dt tensor.DType, shape []int, v []float32) (*tensor.Tensor, error) {
	out, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, err
	}
	switch dt {
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
	return out, nil
}

// ints64 converts int64 attribute values to ints.
func ints64(v []int64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// dimsOf returns the symbolic shape of concrete dims.
func dimsOf(s []int) ir.Shape { return ir.KnownShape(s...) }

// roundHalfEven rounds x to the nearest integer, ties to even.
func roundHalfEven(x float64) float64 { return math.RoundToEven(x) }

// checkedNumel returns the element count of shape or an error if it is
// invalid or too large.
func checkedNumel(shape []int) (int, error) {
	if err := tensor.CheckShape(shape); err != nil {
		return 0, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	return tensor.NumElements(shape), nil
}

// makeOut allocates an output tensor, turning shape errors into bad input.
func makeOut(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	t, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ops.ErrBadInput, err)
	}
	return t, nil
}
