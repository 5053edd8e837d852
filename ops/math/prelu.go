package math

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// prelu is ONNX PRelu: y = x < 0 ? slope*x : x, with slope broadcast to x's
// shape. Before opset 7 a 1-D slope of x.shape[1] values is per channel.
type prelu struct{ opset int64 }

// slopeShape returns the shape slope is broadcast with.
func (k *prelu) slopeShape(x, slope []int) []int {
	if k.opset < 7 && len(slope) == 1 && slope[0] > 1 && len(x) >= 2 && x[1] == slope[0] {
		s := make([]int, len(x)-1)
		for i := range s {
			s[i] = 1
		}
		s[0] = slope[0]
		return s
	}
	return slope
}

func (k *prelu) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs("PRelu", in, 2, 2); err != nil {
		return nil, err
	}
	if err := sameDType("PRelu", in[0].Type.DType, in[1].Type.DType); err != nil {
		return nil, err
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && !numericTypes.has(dt) {
		return nil, badType("PRelu", dt)
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: in[0].Type.Shape.Clone()}}, nil
}

func (k *prelu) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors("PRelu", in, 2, 2); err != nil {
		return nil, err
	}
	x, s := in[0], in[1]
	if x.DType != s.DType {
		return nil, fmt.Errorf("%w: PRelu of %v and %v", ops.ErrBadInput, x.DType, s.DType)
	}
	if !numericTypes.has(x.DType) {
		return nil, badType("PRelu", x.DType)
	}
	ss := k.slopeShape(x.Shape, s.Shape)
	shape, err := ops.BroadcastShape(x.Shape, ss)
	if err != nil || len(shape) != len(x.Shape) || tensor.NumElements(shape) != x.Len() {
		return nil, fmt.Errorf("%w: PRelu slope of shape %v does not broadcast to %v", ops.ErrBadInput, s.Shape, x.Shape)
	}
	out, err := ops.NewOutput(env, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	p := newPlan(x.Shape, x.Shape, ss)
	switch x.DType {
	case tensor.Float32:
		binaryLoop(p, elems[float32](x), elems[float32](s), elems[float32](out), preluT[float32])
	case tensor.Float64:
		binaryLoop(p, elems[float64](x), elems[float64](s), elems[float64](out), preluT[float64])
	case tensor.Float16, tensor.BFloat16:
		tmp := make([]float32, out.Len())
		binaryLoop(p, halfToF32(x), halfToF32(s), tmp, preluT[float32])
		storeHalf(out, tmp)
	default:
		tmp := make([]int64, out.Len())
		binaryLoop(p, numbers[int64](x), numbers[int64](s), tmp, preluT[int64])
		store(out, tmp)
	}
	return env.One(out), nil
}

func preluT[T ops.Number](x, s T) T {
	if x < 0 {
		return s * x
	}
	return x
}

func init() {
	ops.Register(ops.Def{Type: "PRelu", Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		return &prelu{opset: opset}, nil
	}})
}
