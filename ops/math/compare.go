package math

import (
	"cmp"
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// cmpOp names a comparison or logical op with a bool output.
type cmpOp int

const (
	cmpEq cmpOp = iota
	cmpLt
	cmpLe
	cmpGt
	cmpGe
	logAnd
	logOr
	logXor
)

func cmpFn[T cmp.Ordered](op cmpOp) func(x, y T) bool {
	switch op {
	case cmpEq:
		return func(x, y T) bool { return x == y }
	case cmpLt:
		return func(x, y T) bool { return x < y }
	case cmpLe:
		return func(x, y T) bool { return x <= y }
	case cmpGt:
		return func(x, y T) bool { return x > y }
	case cmpGe:
		return func(x, y T) bool { return x >= y }
	}
	return nil
}

// boolFn returns op on bools stored as bytes (any nonzero byte is true).
func boolFn(op cmpOp) func(x, y uint8) bool {
	switch op {
	case cmpEq:
		return func(x, y uint8) bool { return (x != 0) == (y != 0) }
	case logAnd:
		return func(x, y uint8) bool { return x != 0 && y != 0 }
	case logOr:
		return func(x, y uint8) bool { return x != 0 || y != 0 }
	case logXor:
		return func(x, y uint8) bool { return (x != 0) != (y != 0) }
	}
	return nil
}

// compare is a binary op with a bool output: comparisons (numeric inputs;
// Equal also takes bools and strings) and logical And/Or/Xor (bool inputs).
type compare struct {
	name    string
	op      cmpOp
	bools   bool // accepts bool inputs
	numbers bool // accepts numeric inputs
	strings bool // accepts string inputs
	legacy  legacyBcast
}

func (k *compare) accepts(dt tensor.DType) bool {
	switch {
	case dt == tensor.Bool:
		return k.bools
	case dt == tensor.String:
		return k.strings
	}
	return k.numbers && numericTypes.has(dt)
}

func (k *compare) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs(k.name, in, 2, 2); err != nil {
		return nil, err
	}
	if err := sameDType(k.name, in[0].Type.DType, in[1].Type.DType); err != nil {
		return nil, err
	}
	for _, v := range in {
		if dt := v.Type.DType; dt != tensor.Undefined && !k.accepts(dt) {
			return nil, badType(k.name, dt)
		}
	}
	b, err := k.legacy.value(in[0], in[1])
	if err != nil {
		return nil, err
	}
	return inferBroadcast(tensor.Bool, in[0], b)
}

func (k *compare) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors(k.name, in, 2, 2); err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	b, err := k.legacy.tensor(a, b)
	if err != nil {
		return nil, err
	}
	if a.DType != b.DType {
		return nil, fmt.Errorf("%w: %s of %v and %v", ops.ErrBadInput, k.name, a.DType, b.DType)
	}
	if !k.accepts(a.DType) {
		return nil, badType(k.name, a.DType)
	}
	out, err := broadcastOut(env, tensor.Bool, a, b)
	if err != nil {
		return nil, err
	}
	p := newPlan(out.Shape, a.Shape, b.Shape)
	dst := elems[bool](out)
	switch a.DType {
	case tensor.Bool:
		binaryLoop(p, elems[uint8](a), elems[uint8](b), dst, boolFn(k.op))
	case tensor.String:
		binaryLoop(p, a.Strings, b.Strings, dst, cmpFn[string](k.op))
	case tensor.Float32:
		binaryLoop(p, elems[float32](a), elems[float32](b), dst, cmpFn[float32](k.op))
	case tensor.Float64:
		binaryLoop(p, elems[float64](a), elems[float64](b), dst, cmpFn[float64](k.op))
	case tensor.Float16, tensor.BFloat16:
		binaryLoop(p, halfToF32(a), halfToF32(b), dst, cmpFn[float32](k.op))
	case tensor.Int8:
		binaryLoop(p, elems[int8](a), elems[int8](b), dst, cmpFn[int8](k.op))
	case tensor.Int16:
		binaryLoop(p, elems[int16](a), elems[int16](b), dst, cmpFn[int16](k.op))
	case tensor.Int32:
		binaryLoop(p, elems[int32](a), elems[int32](b), dst, cmpFn[int32](k.op))
	case tensor.Int64:
		binaryLoop(p, elems[int64](a), elems[int64](b), dst, cmpFn[int64](k.op))
	case tensor.Uint8:
		binaryLoop(p, elems[uint8](a), elems[uint8](b), dst, cmpFn[uint8](k.op))
	case tensor.Uint16:
		binaryLoop(p, elems[uint16](a), elems[uint16](b), dst, cmpFn[uint16](k.op))
	case tensor.Uint32:
		binaryLoop(p, elems[uint32](a), elems[uint32](b), dst, cmpFn[uint32](k.op))
	case tensor.Uint64:
		binaryLoop(p, elems[uint64](a), elems[uint64](b), dst, cmpFn[uint64](k.op))
	}
	return env.One(out), nil
}

func registerCompare(t ops.Traits, k compare) {
	ops.Register(ops.Def{Type: k.name, Traits: t, Attrs: broadcastAttrs, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		kk := k
		var err error
		if kk.legacy, err = readLegacy(n, opset); err != nil {
			return nil, err
		}
		return &kk, nil
	}})
}

// boolUnary is a unary op with a bool output: Not (bool input), IsNaN and
// IsInf (float input).
type boolUnary struct {
	name string
	not  bool               // Not; else f on floats
	f    func(float64) bool // IsNaN, IsInf
	f32  func(float32) bool // float32 form of f
}

func (k *boolUnary) accepts(dt tensor.DType) bool {
	if k.not {
		return dt == tensor.Bool
	}
	return dt.IsFloat()
}

func (k *boolUnary) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs(k.name, in, 1, 1); err != nil {
		return nil, err
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && !k.accepts(dt) {
		return nil, badType(k.name, dt)
	}
	return []ir.Type{{DType: tensor.Bool, Shape: in[0].Type.Shape.Clone()}}, nil
}

func (k *boolUnary) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors(k.name, in, 1, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if !k.accepts(x.DType) {
		return nil, badType(k.name, x.DType)
	}
	out, err := ops.NewOutput(env, tensor.Bool, x.Shape)
	if err != nil {
		return nil, err
	}
	dst := elems[bool](out)
	switch {
	case k.not:
		unaryLoop(elems[uint8](x), dst, func(v uint8) bool { return v == 0 })
	case x.DType == tensor.Float32:
		unaryLoop(elems[float32](x), dst, k.f32)
	case x.DType == tensor.Float64:
		unaryLoop(elems[float64](x), dst, k.f)
	default:
		unaryLoop(halfToF32(x), dst, k.f32)
	}
	return env.One(out), nil
}

func init() {
	registerCompare(ops.ElementwiseBinary, compare{name: "Equal", op: cmpEq, bools: true, numbers: true, strings: true})
	registerCompare(ops.ElementwiseBinary, compare{name: "Less", op: cmpLt, numbers: true})
	registerCompare(0, compare{name: "LessOrEqual", op: cmpLe, numbers: true})
	registerCompare(ops.ElementwiseBinary, compare{name: "Greater", op: cmpGt, numbers: true})
	registerCompare(0, compare{name: "GreaterOrEqual", op: cmpGe, numbers: true})
	registerCompare(ops.ElementwiseBinary, compare{name: "And", op: logAnd, bools: true})
	registerCompare(ops.ElementwiseBinary, compare{name: "Or", op: logOr, bools: true})
	registerCompare(ops.ElementwiseBinary, compare{name: "Xor", op: logXor, bools: true})

	ops.Register(ops.Def{Type: "Not", Traits: ops.ElementwiseUnary, Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		return &boolUnary{name: "Not", not: true}, nil
	}})
	ops.Register(ops.Def{Type: "IsNaN", Prepare: func(*ir.Node, int64) (ops.Kernel, error) {
		return &boolUnary{name: "IsNaN", f: math.IsNaN, f32: func(x float32) bool { return x != x }}, nil
	}})
	ops.Register(ops.Def{Type: "IsInf", Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseIsInfAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		pos, neg := a.DetectPositive, a.DetectNegative
		f := func(x float64) bool { return pos && math.IsInf(x, 1) || neg && math.IsInf(x, -1) }
		return &boolUnary{name: "IsInf", f: f, f32: func(x float32) bool { return f(float64(x)) }}, nil
	}, Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseIsInfAttrs(n, opset) }})
}
