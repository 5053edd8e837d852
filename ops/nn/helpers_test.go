package nn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// randTensor returns a tensor of type dt with values uniform in [-1, 1)
// (integers in [-5, 5], unsigned in [0, 9]).
func randTensor(r *rand.Rand, dt tensor.DType, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	for i := 0; i < t.Len(); i++ {
		switch {
		case dt.IsFloat():
			t.SetFloat(i, r.Float64()*2-1)
		case dt.IsSigned():
			t.SetFloat(i, float64(r.IntN(11)-5))
		default:
			t.SetFloat(i, float64(r.IntN(10)))
		}
	}
	return t
}

// floats returns t's elements as float64.
func floats(t *tensor.Tensor) []float64 {
	out := make([]float64, t.Len())
	for i := range out {
		out[i] = t.Float(i)
	}
	return out
}

// fromFloats returns a tensor of type dt holding v.
func fromFloats(dt tensor.DType, v []float64, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	for i, x := range v {
		t.SetFloat(i, x)
	}
	return t
}

// f32 returns a float32 tensor.
func f32(v []float32, shape ...int) *tensor.Tensor { return tensor.FromFloat32(v, shape...) }

// i64 returns an int64 tensor.
func i64(v []int64, shape ...int) *tensor.Tensor { return tensor.FromInt64(v, shape...) }

// u8 returns a uint8 tensor.
func u8(v []uint8, shape ...int) *tensor.Tensor {
	t := tensor.New(tensor.Uint8, shape...)
	copy(t.Uint8s(), v)
	return t
}

// scalarOf returns a rank-0 tensor.
func scalarOf(dt tensor.DType, v float64) *tensor.Tensor { return tensor.Scalar(dt, v) }

// execSafe runs opstest.Exec, turning a panic into an error.
func execSafe(n *ir.Node, opset int64, in ...*tensor.Tensor) (outs []*tensor.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return opstest.Exec(n, opset, in...)
}

// wantBadInput checks that running n fails with ops.ErrBadInput (or
// ops.ErrBadAttr from Prepare), without panicking.
func wantBadInput(t *testing.T, name string, n *ir.Node, opset int64, in ...*tensor.Tensor) {
	t.Helper()
	_, err := execSafe(n, opset, in...)
	if err == nil {
		t.Errorf("%s: no error", name)
		return
	}
	if !errors.Is(err, ops.ErrBadInput) && !errors.Is(err, ops.ErrBadAttr) {
		t.Errorf("%s: error %v does not wrap ErrBadInput or ErrBadAttr", name, err)
	}
}

// inferTypes prepares n and infers its outputs from the given input types.
func inferTypes(t *testing.T, n *ir.Node, opset int64, in ...ir.Type) []ir.Type {
	t.Helper()
	k, err := ops.Prepare(n, opset)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	vals := make([]*ir.Value, len(in))
	for i, ty := range in {
		if ty.DType != tensor.Undefined {
			vals[i] = &ir.Value{Name: fmt.Sprintf("in%d", i), Type: ty}
		}
	}
	types, err := k.Infer(vals)
	if err != nil {
		t.Fatalf("infer: %v", err)
	}
	return types
}

// ty is a shorthand for an ir.Type.
func ty(dt tensor.DType, dims ...ir.Dim) ir.Type { return ir.Type{DType: dt, Shape: ir.Shape(dims)} }

// closeTo compares got with want (float64 values) within tolerance.
func closeTo(t *testing.T, name string, got *tensor.Tensor, wantShape []int, want []float64, tol float64) {
	t.Helper()
	w := fromFloats(tensor.Float64, want, wantShape...)
	g := fromFloats(tensor.Float64, floats(got), got.Shape...)
	if err := opstest.Close(g, w, tol, tol); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

// nanArena is an Env whose Alloc hands out NaN-filled tensors, as an arena
// with stale contents would: a kernel that does not write every element
// leaves NaNs behind.
func nanArena() *ops.Env {
	return &ops.Env{Ctx: context.Background(), Alloc: func(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
		t, err := tensor.Make(dt, shape)
		if err != nil {
			return nil, err
		}
		for i := range t.Float32s() {
			t.Float32s()[i] = float32(math.NaN())
		}
		return t, nil
	}}
}
