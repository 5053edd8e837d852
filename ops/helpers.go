package ops

import (
	"fmt"
	"unsafe"

	"github.com/kilnai/kiln/tensor"
)

// This file holds the small helpers every operator family uses.

// BadInput returns an error wrapping ErrBadInput with a formatted message.
func BadInput(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadInput, fmt.Sprintf(format, args...))
}

// Arg returns in[i], or nil when the node has no input (or value) i.
func Arg[T any](in []*T, i int) *T {
	if i < len(in) {
		return in[i]
	}
	return nil
}

// Need checks that the first n inputs (tensors or values) of op are present.
func Need[T any](op string, in []*T, n int) error {
	if len(in) < n {
		return BadInput("%s takes at least %d inputs, got %d", op, n, len(in))
	}
	for i := 0; i < n; i++ {
		if in[i] == nil {
			return BadInput("%s: input %d is missing", op, i)
		}
	}
	return nil
}

// NormAxis maps axis in [-rank, rank) to [0, rank).
func NormAxis(op string, axis int64, rank int) (int, error) {
	if axis < -int64(rank) || axis >= int64(rank) {
		return 0, BadInput("%s: axis %d is out of range for rank %d", op, axis, rank)
	}
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis), nil
}

// Elems returns the elements of t as a []T sharing its storage. The caller
// picks T to match the element size of t.DType (float16 and bfloat16 as
// uint16).
func Elems[T any](t *tensor.Tensor) []T {
	if len(t.Data) == 0 {
		return []T{}
	}
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(&t.Data[0])), len(t.Data)/int(unsafe.Sizeof(z)))
}
