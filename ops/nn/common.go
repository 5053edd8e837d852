package nn

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
