package math

import (
	"math"

	"github.com/kilnai/kiln/internal/parallel"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// intOp names the integer form of a unary op.
type intOp int

const (
	intNone  intOp = iota // integers are rejected
	intAbs                // |x|
	intNeg                // -x
	intSign               // -1, 0 or 1
	intRelu               // max(x, 0)
	intNot                // ^x (BitwiseNot)
	intFloat              // computed in float64 by the op's f64 and converted back
)

// intUnary returns op on integers of type T; f is the float64 function used
// by intFloat.
func intUnary[T integer](op intOp, f func(float64) float64) func(T) T {
	switch op {
	case intAbs:
		return func(x T) T {
			if x < 0 {
				return -x
			}
			return x
		}
	case intNeg:
		return func(x T) T { return -x }
	case intSign:
		return func(x T) T {
			switch {
			case x > 0:
				return 1
			case x < 0:
				var zero T // -1 in any signed T (no constant -1 for unsigned T)
				return zero - 1
			}
			return 0
		}
	case intRelu:
		return func(x T) T { return max(x, 0) }
	case intNot:
		return func(x T) T { return ^x }
	case intFloat:
		return func(x T) T { return T(f(float64(x))) }
	}
	return nil
}

// unary is an elementwise op with one input and an output of its type.
// f32 computes float32 (and, through float32, float16 and bfloat16) chunks;
// f64 computes float64 elements; ints says what integers get.
type unary struct {
	name   string
	f32    func(dst, src []float32)
	f64    func(float64) float64
	ints   intOp
	floats bool // false: only integers (BitwiseNot)
}

func (u *unary) accepts(dt tensor.DType) bool {
	if dt.IsFloat() {
		return u.floats
	}
	return dt.IsInt() && u.ints != intNone
}

func (u *unary) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs(u.name, in, 1, 1); err != nil {
		return nil, err
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && !u.accepts(dt) {
		return nil, badType(u.name, dt)
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: in[0].Type.Shape.Clone()}}, nil
}

func (u *unary) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors(u.name, in, 1, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if !u.accepts(x.DType) {
		return nil, badType(u.name, x.DType)
	}
	out, err := ops.NewOutput(env, x.DType, x.Shape)
	if err != nil {
		return nil, err
	}
	n := out.Len()
	switch x.DType {
	case tensor.Float32:
		src, dst := elems[float32](x), elems[float32](out)
		parallel.For(n, ops.ElemGrain, func(lo, hi int) { u.f32(dst[lo:hi], src[lo:hi]) })
	case tensor.Float64:
		unaryLoop(elems[float64](x)[:n], elems[float64](out), u.f64)
	case tensor.Float16, tensor.BFloat16:
		v := halfToF32(x)
		u.f32(v, v)
		storeHalf(out, v)
	case tensor.Int8:
		unaryLoop(elems[int8](x), elems[int8](out), intUnary[int8](u.ints, u.f64))
	case tensor.Int16:
		unaryLoop(elems[int16](x), elems[int16](out), intUnary[int16](u.ints, u.f64))
	case tensor.Int32:
		unaryLoop(elems[int32](x), elems[int32](out), intUnary[int32](u.ints, u.f64))
	case tensor.Int64:
		unaryLoop(elems[int64](x), elems[int64](out), intUnary[int64](u.ints, u.f64))
	case tensor.Uint8:
		unaryLoop(elems[uint8](x), elems[uint8](out), intUnary[uint8](u.ints, u.f64))
	case tensor.Uint16:
		unaryLoop(elems[uint16](x), elems[uint16](out), intUnary[uint16](u.ints, u.f64))
	case tensor.Uint32:
		unaryLoop(elems[uint32](x), elems[uint32](out), intUnary[uint32](u.ints, u.f64))
	case tensor.Uint64:
		unaryLoop(elems[uint64](x), elems[uint64](out), intUnary[uint64](u.ints, u.f64))
	}
	return env.One(out), nil
}

// mapF32 turns a float32 function into a chunk kernel.
func mapF32(f func(float32) float32) func(dst, src []float32) {
	return func(dst, src []float32) {
		src = src[:len(dst)]
		for i, v := range src {
			dst[i] = f(v)
		}
	}
}

// viaF64 computes a float32 function through its float64 form.
func viaF64(f func(float64) float64) func(dst, src []float32) {
	return func(dst, src []float32) {
		src = src[:len(dst)]
		for i, v := range src {
			dst[i] = float32(f(float64(v)))
		}
	}
}

// newUnary returns a float op computed by f64 (and f32 when given).
func newUnary(name string, f64 func(float64) float64, f32 func(dst, src []float32), ints intOp) *unary {
	if f32 == nil {
		f32 = viaF64(f64)
	}
	return &unary{name: name, f32: f32, f64: f64, ints: ints, floats: true}
}

// registerUnary registers an op whose Prepare reads no attributes, with
// traits t.
func registerUnary(t ops.Traits, u *unary) {
	ops.Register(ops.Def{Type: u.name, Traits: t, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return u, nil }})
}

func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return x // 0 or NaN
}

// softplus returns log(1+e**x) without overflow.
func softplus(x float64) float64 { return math.Max(x, 0) + math.Log1p(math.Exp(-math.Abs(x))) }

func reluF32(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = max(v, 0) // branch-free; NaN stays NaN
	}
}

func init() {
	ew := ops.ElementwiseUnary
	f := func(t ops.Traits, name string, f64 func(float64) float64) {
		registerUnary(t, newUnary(name, f64, nil, intNone))
	}
	registerUnary(ew, newUnary("Abs", math.Abs, mapF32(func(x float32) float32 { return float32(math.Abs(float64(x))) }), intAbs))
	registerUnary(ew, newUnary("Neg", func(x float64) float64 { return -x }, mapF32(func(x float32) float32 { return -x }), intNeg))
	registerUnary(ew, newUnary("Sign", sign, nil, intSign))
	registerUnary(ew, newUnary("Relu", func(x float64) float64 {
		if x < 0 {
			return 0
		}
		return x
	}, reluF32, intRelu))
	registerUnary(ew, newUnary("Sigmoid", func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }, sigmoidF32, intNone))
	registerUnary(ew, newUnary("Tanh", math.Tanh, tanhF32, intNone))
	registerUnary(ew, newUnary("Erf", math.Erf, erfF32, intNone))
	registerUnary(0, &unary{name: "BitwiseNot", ints: intNot})
	f(ew, "Exp", math.Exp)
	f(ew, "Log", math.Log)
	f(ew, "Sqrt", math.Sqrt)
	f(ew, "Reciprocal", func(x float64) float64 { return 1 / x })
	f(ew, "Floor", math.Floor)
	f(ew, "Ceil", math.Ceil)
	f(ew, "Round", math.RoundToEven)
	f(ew, "Sin", math.Sin)
	f(ew, "Cos", math.Cos)
	f(0, "Tan", math.Tan)
	f(0, "Asin", math.Asin)
	f(0, "Acos", math.Acos)
	f(0, "Atan", math.Atan)
	f(0, "Sinh", math.Sinh)
	f(0, "Cosh", math.Cosh)
	f(0, "Asinh", math.Asinh)
	f(0, "Acosh", math.Acosh)
	f(0, "Atanh", math.Atanh)
	f(ew, "Softplus", softplus)
	f(ew, "Softsign", func(x float64) float64 { return x / (1 + math.Abs(x)) })
	f(ew, "Mish", func(x float64) float64 { return x * math.Tanh(softplus(x)) })
}
