package math

import (
	"fmt"
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// arithOp names a binary operation computed in the operands' own type.
type arithOp int

const (
	opAdd arithOp = iota
	opSub
	opMul
	opDiv
	opMod  // Python-style: the result has the divisor's sign
	opFmod // C-style: the result has the dividend's sign
	opMin
	opMax
	opBitAnd
	opBitOr
	opBitXor
	opShl
	opShr
)

// integer is the set of Go integer types tensors hold.
type integer interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// floating is the set of Go float types tensors hold.
type floating interface{ ~float32 | ~float64 }

// intArith returns op on integers of type T. Integer division and remainder
// by zero give 0 (never a panic); shifts by a negative count give 0.
func intArith[T integer](op arithOp) func(x, y T) T {
	switch op {
	case opAdd:
		return func(x, y T) T { return x + y }
	case opSub:
		return func(x, y T) T { return x - y }
	case opMul:
		return func(x, y T) T { return x * y }
	case opDiv:
		return func(x, y T) T {
			if y == 0 {
				return 0
			}
			return x / y
		}
	case opMod:
		return func(x, y T) T {
			if y == 0 {
				return 0
			}
			r := x % y
			if r != 0 && (r < 0) != (y < 0) {
				r += y
			}
			return r
		}
	case opFmod:
		return func(x, y T) T {
			if y == 0 {
				return 0
			}
			return x % y
		}
	case opMin:
		return func(x, y T) T { return min(x, y) }
	case opMax:
		return func(x, y T) T { return max(x, y) }
	case opBitAnd:
		return func(x, y T) T { return x & y }
	case opBitOr:
		return func(x, y T) T { return x | y }
	case opBitXor:
		return func(x, y T) T { return x ^ y }
	case opShl:
		return func(x, y T) T {
			if y < 0 {
				return 0
			}
			return x << y
		}
	case opShr:
		return func(x, y T) T {
			if y < 0 {
				return 0
			}
			return x >> y
		}
	}
	return nil
}

// floatArith returns op on floats of type T; nil for bitwise ops.
func floatArith[T floating](op arithOp) func(x, y T) T {
	switch op {
	case opAdd:
		return func(x, y T) T { return x + y }
	case opSub:
		return func(x, y T) T { return x - y }
	case opMul:
		return func(x, y T) T { return x * y }
	case opDiv:
		return func(x, y T) T { return x / y }
	case opMod:
		return func(x, y T) T {
			r := T(math.Mod(float64(x), float64(y)))
			if r != 0 && (r < 0) != (y < 0) {
				r += y
			}
			return r
		}
	case opFmod:
		return func(x, y T) T { return T(math.Mod(float64(x), float64(y))) }
	case opMin:
		return func(x, y T) T {
			if x < y || x != x {
				return x
			}
			return y
		}
	case opMax:
		return func(x, y T) T {
			if x > y || x != x {
				return x
			}
			return y
		}
	}
	return nil
}

// arithF32Small computes a float32 Add, Sub, Mul or Div of one goroutine's
// size (at most ops.ElemGrain elements) whose operands are each the
// output's size or a scalar, without a broadcast plan: operands as large
// as the output lie in its layout. It reports whether it did.
func arithF32Small(op arithOp, a, b, out *tensor.Tensor) bool {
	n := out.Len()
	if n > ops.ElemGrain {
		return false
	}
	na, nb := a.Len(), b.Len()
	av, bv, d := elems[float32](a), elems[float32](b), elems[float32](out)
	if len(av) < na || len(bv) < nb || len(d) < n {
		return false
	}
	d = d[:n]
	switch {
	case na == n && nb == n:
		vvF32(op, d, av[:n], bv[:n])
	case na == n && nb == 1:
		vsF32(op, d, av[:n], bv[0])
	case na == 1 && nb == n:
		svF32(op, d, av[0], bv[:n])
	default:
		return false
	}
	return true
}

// arithF32 is the fast float32 path of Add, Sub, Mul and Div: tight loops
// over each run with no per-element call.
func arithF32(op arithOp, p *plan, a, b, dst []float32) {
	sa, sb := p.inner(0), p.inner(1)
	p.parallel(func(o int, offs []int, cnt int) {
		d := dst[o : o+cnt]
		ia, ib := offs[0], offs[1]
		switch {
		case sa == 1 && sb == 1:
			vvF32(op, d, a[ia:ia+cnt], b[ib:ib+cnt])
		case sa == 1:
			vsF32(op, d, a[ia:ia+cnt], b[ib])
		case sb == 1:
			svF32(op, d, a[ia], b[ib:ib+cnt])
		default:
			v := floatArith[float32](op)(a[ia], b[ib])
			for i := range d {
				d[i] = v
			}
		}
	})
}

func vvF32(op arithOp, d, x, y []float32) {
	x, y = x[:len(d)], y[:len(d)]
	switch op {
	case opAdd:
		for i := range d {
			d[i] = x[i] + y[i]
		}
	case opSub:
		for i := range d {
			d[i] = x[i] - y[i]
		}
	case opMul:
		for i := range d {
			d[i] = x[i] * y[i]
		}
	case opDiv:
		for i := range d {
			d[i] = x[i] / y[i]
		}
	}
}

func vsF32(op arithOp, d, x []float32, y float32) {
	x = x[:len(d)]
	switch op {
	case opAdd:
		for i := range d {
			d[i] = x[i] + y
		}
	case opSub:
		for i := range d {
			d[i] = x[i] - y
		}
	case opMul:
		for i := range d {
			d[i] = x[i] * y
		}
	case opDiv:
		for i := range d {
			d[i] = x[i] / y
		}
	}
}

func svF32(op arithOp, d []float32, x float32, y []float32) {
	y = y[:len(d)]
	switch op {
	case opAdd:
		for i := range d {
			d[i] = x + y[i]
		}
	case opSub:
		for i := range d {
			d[i] = x - y[i]
		}
	case opMul:
		for i := range d {
			d[i] = x * y[i]
		}
	case opDiv:
		for i := range d {
			d[i] = x / y[i]
		}
	}
}

// arithInto computes out = a op b with broadcasting, all three of one type.
// It returns an error for a type op does not apply to.
func arithInto(name string, op arithOp, a, b, out *tensor.Tensor) error {
	if a.DType == tensor.Float32 && op <= opDiv && arithF32Small(op, a, b, out) {
		return nil
	}
	p := newPlan(out.Shape, a.Shape, b.Shape)
	switch a.DType {
	case tensor.Float32:
		if op <= opDiv {
			arithF32(op, p, elems[float32](a), elems[float32](b), elems[float32](out))
			return nil
		}
		if f := floatArith[float32](op); f != nil {
			binaryLoop(p, elems[float32](a), elems[float32](b), elems[float32](out), f)
			return nil
		}
	case tensor.Float64:
		if f := floatArith[float64](op); f != nil {
			binaryLoop(p, elems[float64](a), elems[float64](b), elems[float64](out), f)
			return nil
		}
	case tensor.Float16, tensor.BFloat16:
		if f := floatArith[float32](op); f != nil {
			tmp := make([]float32, out.Len())
			binaryLoop(p, halfToF32(a), halfToF32(b), tmp, f)
			storeHalf(out, tmp)
			return nil
		}
	case tensor.Int8:
		binaryLoop(p, elems[int8](a), elems[int8](b), elems[int8](out), intArith[int8](op))
		return nil
	case tensor.Int16:
		binaryLoop(p, elems[int16](a), elems[int16](b), elems[int16](out), intArith[int16](op))
		return nil
	case tensor.Int32:
		binaryLoop(p, elems[int32](a), elems[int32](b), elems[int32](out), intArith[int32](op))
		return nil
	case tensor.Int64:
		binaryLoop(p, elems[int64](a), elems[int64](b), elems[int64](out), intArith[int64](op))
		return nil
	case tensor.Uint8:
		binaryLoop(p, elems[uint8](a), elems[uint8](b), elems[uint8](out), intArith[uint8](op))
		return nil
	case tensor.Uint16:
		binaryLoop(p, elems[uint16](a), elems[uint16](b), elems[uint16](out), intArith[uint16](op))
		return nil
	case tensor.Uint32:
		binaryLoop(p, elems[uint32](a), elems[uint32](b), elems[uint32](out), intArith[uint32](op))
		return nil
	case tensor.Uint64:
		binaryLoop(p, elems[uint64](a), elems[uint64](b), elems[uint64](out), intArith[uint64](op))
		return nil
	}
	return badType(name, a.DType)
}

// typeSet says which element types an op accepts.
type typeSet int

const (
	numericTypes  typeSet = iota // floats and integers
	integerTypes                 // signed and unsigned integers
	unsignedTypes                // unsigned integers
)

func (s typeSet) has(dt tensor.DType) bool {
	switch s {
	case numericTypes:
		return dt.IsFloat() || dt.IsInt()
	case integerTypes:
		return dt.IsInt()
	case unsignedTypes:
		return dt == tensor.Uint8 || dt == tensor.Uint16 || dt == tensor.Uint32 || dt == tensor.Uint64
	}
	return false
}

// arith is a binary op whose output has its inputs' type: Add, Sub, Mul,
// Div, Mod, BitShift, BitwiseAnd/Or/Xor.
type arith struct {
	name   string
	op     arithOp
	types  typeSet
	legacy legacyBcast
}

func (k *arith) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs(k.name, in, 2, 2); err != nil {
		return nil, err
	}
	a, b := in[0].Type.DType, in[1].Type.DType
	if err := sameDType(k.name, a, b); err != nil {
		return nil, err
	}
	if a == tensor.Undefined {
		a = b
	}
	if a != tensor.Undefined && !k.types.has(a) {
		return nil, badType(k.name, a)
	}
	b1, err := k.legacy.value(in[0], in[1])
	if err != nil {
		return nil, err
	}
	return inferBroadcast(a, in[0], b1)
}

func (k *arith) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
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
	if !k.types.has(a.DType) {
		return nil, badType(k.name, a.DType)
	}
	out, err := broadcastOut(env, a.DType, a, b)
	if err != nil {
		return nil, err
	}
	if err := arithInto(k.name, k.op, a, b, out); err != nil {
		return nil, err
	}
	return env.One(out), nil
}

// registerArith registers a binary arithmetic op: prep gives its operation
// and types from the node (its typed attributes, for Mod and BitShift, whose
// Def.Attrs is attrs; the others' are the broadcasting ones).
func registerArith(name string, t ops.Traits, attrs func(*ir.Node, int64) (any, error), prep func(n *ir.Node, opset int64) (arithOp, typeSet, error)) {
	ops.Register(ops.Def{Type: name, Traits: t, Attrs: attrs, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		op, types, err := prep(n, opset)
		if err != nil {
			return nil, err
		}
		legacy, err := readLegacy(n, opset)
		if err != nil {
			return nil, err
		}
		return &arith{name: name, op: op, types: types, legacy: legacy}, nil
	}})
}

func fixed(op arithOp, types typeSet) func(*ir.Node, int64) (arithOp, typeSet, error) {
	return func(*ir.Node, int64) (arithOp, typeSet, error) { return op, types, nil }
}

func init() {
	registerArith("Add", ops.ElementwiseBinary, broadcastAttrs, fixed(opAdd, numericTypes))
	registerArith("Sub", ops.ElementwiseBinary, broadcastAttrs, fixed(opSub, numericTypes))
	registerArith("Mul", ops.ElementwiseBinary, broadcastAttrs, fixed(opMul, numericTypes))
	registerArith("Div", ops.ElementwiseBinary, broadcastAttrs, fixed(opDiv, numericTypes))
	registerArith("BitwiseAnd", 0, broadcastAttrs, fixed(opBitAnd, integerTypes))
	registerArith("BitwiseOr", 0, broadcastAttrs, fixed(opBitOr, integerTypes))
	registerArith("BitwiseXor", 0, broadcastAttrs, fixed(opBitXor, integerTypes))
	registerArith("Mod", 0, func(n *ir.Node, opset int64) (any, error) { return ops.ParseModAttrs(n, opset) }, func(n *ir.Node, opset int64) (arithOp, typeSet, error) {
		a, err := ops.ParseModAttrs(n, opset)
		if a.Fmod {
			return opFmod, numericTypes, err
		}
		return opMod, numericTypes, err
	})
	registerArith("BitShift", 0, func(n *ir.Node, opset int64) (any, error) { return ops.ParseBitShiftAttrs(n, opset) }, func(n *ir.Node, opset int64) (arithOp, typeSet, error) {
		a, err := ops.ParseBitShiftAttrs(n, opset)
		if a.Right {
			return opShr, unsignedTypes, err
		}
		return opShl, unsignedTypes, err
	})
}
