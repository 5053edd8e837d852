package math

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// arith is a numeric binary op computed in the inputs' own type (float16 and
// bfloat16 through float32).
type arith struct {
	name string
	f32  func(a, b float32) float32
	f64  func(a, b float64) float64
	i64  func(a, b int64) int64 // nil: integer inputs are rejected
}

func (k *arith) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) != 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("%w: %s takes 2 inputs", ops.ErrBadInput, k.name)
	}
	s, err := ops.InferBroadcast(in[0], in[1])
	if err != nil {
		return nil, err
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: s}}, nil
}

func (k *arith) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	a, b := in[0], in[1]
	if a.DType != b.DType {
		return nil, fmt.Errorf("%w: %s of %v and %v", ops.ErrBadInput, k.name, a.DType, b.DType)
	}
	shape, err := ops.BroadcastShape(a.Shape, b.Shape)
	if err != nil {
		return nil, err
	}
	out, err := tensor.Make(a.DType, shape)
	if err != nil {
		return nil, err
	}
	switch a.DType {
	case tensor.Float32:
		ops.BinaryMap(a.Float32s(), a.Shape, b.Float32s(), b.Shape, out.Float32s(), shape, k.f32)
	case tensor.Float64:
		ops.BinaryMap(a.Float64s(), a.Shape, b.Float64s(), b.Shape, out.Float64s(), shape, k.f64)
	case tensor.Float16, tensor.BFloat16:
		af, bf := a.ToFloat32(), b.ToFloat32()
		tmp := make([]float32, out.Len())
		ops.BinaryMap(af, a.Shape, bf, b.Shape, tmp, shape, k.f32)
		for i, v := range tmp {
			out.SetFloat(i, float64(v))
		}
	default:
		if k.i64 == nil || !a.DType.IsInt() {
			return nil, fmt.Errorf("%w: %s of %v", ops.ErrBadInput, k.name, a.DType)
		}
		if err := intBinary(a, b, out, shape, k.i64); err != nil {
			return nil, err
		}
	}
	return []*tensor.Tensor{out}, nil
}

// intBinary computes an integer binary op in the inputs' type.
func intBinary(a, b, out *tensor.Tensor, shape []int, f func(x, y int64) int64) error {
	switch a.DType {
	case tensor.Int64:
		ops.BinaryMap(a.Int64s(), a.Shape, b.Int64s(), b.Shape, out.Int64s(), shape, f)
	case tensor.Int32:
		ops.BinaryMap(a.Int32s(), a.Shape, b.Int32s(), b.Shape, out.Int32s(), shape,
			func(x, y int32) int32 { return int32(f(int64(x), int64(y))) })
	default:
		// narrow and unsigned types: through int64 element access
		idx := ops.BroadcastIndex(shape, a.Shape, b.Shape)
		for i := range idx[0] {
			v := f(a.Int(int(idx[0][i])), b.Int(int(idx[1][i])))
			setInt(out, i, v)
		}
	}
	return nil
}

// setInt stores v at element i of an integer tensor with wrap-around.
func setInt(t *tensor.Tensor, i int, v int64) {
	switch t.DType {
	case tensor.Uint64:
		t.Uint64s()[i] = uint64(v)
	case tensor.Int64:
		t.Int64s()[i] = v
	default:
		t.SetFloat(i, float64(v))
		switch t.DType { // exact wrap for narrow types
		case tensor.Int8:
			t.Int8s()[i] = int8(v)
		case tensor.Int16:
			t.Int16s()[i] = int16(v)
		case tensor.Int32:
			t.Int32s()[i] = int32(v)
		case tensor.Uint8:
			t.Uint8s()[i] = uint8(v)
		case tensor.Uint16:
			t.Uint16s()[i] = uint16(v)
		case tensor.Uint32:
			t.Uint32s()[i] = uint32(v)
		}
	}
}

func registerArith(k arith) {
	ops.Register(ops.Def{Type: k.name, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		kk := k
		return &kk, nil
	}})
}

func init() {
	registerArith(arith{name: "Add",
		f32: func(a, b float32) float32 { return a + b },
		f64: func(a, b float64) float64 { return a + b },
		i64: func(a, b int64) int64 { return a + b }})
}
