package math

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// pow is ONNX Pow: base and exponent may have different numeric types; the
// output has the base's type. Integer powers of integers are exact (with
// wrap-around); other integer results truncate the float64 power.
type pow struct{ legacy legacyBcast }

func (k *pow) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs("Pow", in, 2, 2); err != nil {
		return nil, err
	}
	for _, v := range in {
		if dt := v.Type.DType; dt != tensor.Undefined && !numericTypes.has(dt) {
			return nil, badType("Pow", dt)
		}
	}
	b, err := k.legacy.value(in[0], in[1])
	if err != nil {
		return nil, err
	}
	return inferBroadcast(in[0].Type.DType, in[0], b)
}

func (k *pow) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors("Pow", in, 2, 2); err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	b, err := k.legacy.tensor(a, b)
	if err != nil {
		return nil, err
	}
	for _, t := range []*tensor.Tensor{a, b} {
		if !numericTypes.has(t.DType) {
			return nil, badType("Pow", t.DType)
		}
	}
	out, err := broadcastOut(env, a.DType, a, b)
	if err != nil {
		return nil, err
	}
	p := newPlan(out.Shape, a.Shape, b.Shape)
	switch {
	case a.DType == tensor.Float32 && b.Len() == 1:
		powScalarF32(elems[float32](a)[:a.Len()], elems[float32](out), b.Float(0))
	case a.DType == tensor.Float32 && b.DType == tensor.Float32:
		binaryLoop(p, elems[float32](a), elems[float32](b), elems[float32](out), func(x, y float32) float32 {
			return float32(math.Pow(float64(x), float64(y)))
		})
	case a.DType.IsInt() && b.DType.IsInt():
		res := make([]int64, out.Len())
		binaryLoop(p, numbers[int64](a), numbers[int64](b), res, ipow)
		store(out, res)
	default:
		res := make([]float64, out.Len())
		binaryLoop(p, numbers[float64](a), numbers[float64](b), res, math.Pow)
		if a.DType.IsInt() {
			ints := make([]int64, len(res))
			for i, v := range res {
				ints[i] = truncInt(v)
			}
			store(out, ints)
		} else {
			store(out, res)
		}
	}
	return env.One(out), nil
}

// powScalarF32 raises every element of src to the power e.
func powScalarF32(src, dst []float32, e float64) {
	switch e {
	case 1:
		copy(dst, src)
	case 2:
		unaryLoop(src, dst, func(x float32) float32 { return x * x })
	default:
		unaryLoop(src, dst, func(x float32) float32 { return float32(math.Pow(float64(x), e)) })
	}
}

// ipow returns x**y with wrap-around; negative powers truncate toward zero
// (1/x**-y), as an integer division would.
func ipow(x, y int64) int64 {
	if y < 0 {
		switch x {
		case 1:
			return 1
		case -1:
			if y%2 == 0 {
				return 1
			}
			return -1
		}
		return 0
	}
	r := int64(1)
	for y > 0 {
		if y&1 == 1 {
			r *= x
		}
		x *= x
		y >>= 1
	}
	return r
}

// truncInt converts v to int64 toward zero, saturating; NaN gives 0.
func truncInt(v float64) int64 {
	switch {
	case v != v:
		return 0
	case v >= 9.223372036854775807e18:
		return math.MaxInt64
	case v <= -9.223372036854775808e18:
		return math.MinInt64
	}
	return int64(v)
}

func init() {
	ops.Register(ops.Def{Type: "Pow", Traits: ops.ElementwiseBinary, Attrs: broadcastAttrs, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		legacy, err := readLegacy(n, opset)
		if err != nil {
			return nil, fmt.Errorf("Pow: %w", err)
		}
		return &pow{legacy: legacy}, nil
	}})
}
