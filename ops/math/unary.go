package math

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// unaryFloat is a float-only elementwise op. f64 is its float64 form; f32,
// when set, is a faster float32 form. Float16 and bfloat16 inputs are
// computed in float32 and rounded back.
type unaryFloat struct {
	f64 func(x float64) float64
	f32 func(x float32) float32
}

func (u *unaryFloat) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, fmt.Errorf("%w: missing input", ops.ErrBadInput)
	}
	return []ir.Type{in[0].Type}, nil
}

func (u *unaryFloat) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := in[0]
	out, err := tensor.Make(x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	f32 := u.f32
	if f32 == nil {
		f32 = func(v float32) float32 { return float32(u.f64(float64(v))) }
	}
	switch x.DType {
	case tensor.Float32:
		src, dst := x.Float32s(), out.Float32s()
		cpu.ParallelFor(len(src), ops.ElemGrain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = f32(src[i])
			}
		})
	case tensor.Float64:
		src, dst := x.Float64s(), out.Float64s()
		for i, v := range src {
			dst[i] = u.f64(v)
		}
	case tensor.Float16, tensor.BFloat16:
		for i, n := 0, x.Len(); i < n; i++ {
			out.SetFloat(i, float64(f32(float32(x.Float(i)))))
		}
	default:
		return nil, fmt.Errorf("%w: %v input, want a float type", ops.ErrBadInput, x.DType)
	}
	return []*tensor.Tensor{out}, nil
}

// registerUnary registers a float elementwise op whose Prepare reads no
// attributes.
func registerUnary(name string, f64 func(float64) float64, f32 func(float32) float32) {
	ops.Register(ops.Def{Type: name, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		return &unaryFloat{f64: f64, f32: f32}, nil
	}})
}

func init() {
	registerUnary("Relu", func(x float64) float64 { return math.Max(x, 0) },
		func(x float32) float32 {
			if x > 0 {
				return x
			}
			return 0
		})
}
