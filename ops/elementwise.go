package ops

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// Float is the set of Go float types kernels are generic over.
type Float interface{ ~float32 | ~float64 }

// Number is the set of Go numeric types that tensors hold.
type Number interface {
	~float32 | ~float64 | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// elemGrain is the minimum number of elements one goroutine of an
// elementwise loop handles.
const elemGrain = 1 << 15

// unaryFloat is a float-only elementwise op. f64 is its float64 form; f32,
// when set, is a faster float32 form. Float16 and bfloat16 inputs are
// computed in float32 and rounded back.
type unaryFloat struct {
	f64 func(x float64) float64
	f32 func(x float32) float32
}

func (u *unaryFloat) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, fmt.Errorf("%w: missing input", ErrBadInput)
	}
	return []ir.Type{in[0].Type}, nil
}

func (u *unaryFloat) Run(_ *Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
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
		cpu.ParallelFor(len(src), elemGrain, func(lo, hi int) {
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
		return nil, fmt.Errorf("%w: %v input, want a float type", ErrBadInput, x.DType)
	}
	return []*tensor.Tensor{out}, nil
}

// registerUnary registers a float elementwise op whose Prepare reads no
// attributes.
func registerUnary(name string, f64 func(float64) float64, f32 func(float32) float32) {
	Register(Def{Type: name, Prepare: func(n *ir.Node, opset int64) (Kernel, error) {
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
