package gpuexec

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// Activation codes of the kernels (act_apply in kernels/nn.cu).
const (
	actNone        = 0
	actRelu        = 1
	actSigmoid     = 2
	actSiLU        = 3
	actClip        = 4
	actHardSwish   = 5
	actLeakyRelu   = 6
	actHardSigmoid = 7
	actGelu        = 8
	actGeluTanh    = 9
	actTanh        = 10
)

// activation is a parsed activation with its parameters.
type activation struct {
	code   int
	p0, p1 float32
}

// fusedActivation reads the "activation" and "activation_params"
// attributes of kiln's fused ops (see ops/nn/fused.go).
func fusedActivation(n *ir.Node) (activation, error) {
	a, err := ops.ParseEpilogueAttrs(n) // the CPU's rules (ops/nn), defaults of the parameters included
	if err != nil {
		return activation{}, err
	}
	act := activation{p0: a.P0, p1: a.P1}
	switch a.Activation {
	case "":
	case "Relu":
		act.code = actRelu
	case "Clip":
		act.code = actClip
	case "Sigmoid":
		act.code = actSigmoid
	case "SiLU":
		act.code = actSiLU
	case "HardSwish":
		act.code = actHardSwish
	case "LeakyRelu":
		act.code = actLeakyRelu
	case "HardSigmoid":
		act.code = actHardSigmoid
	case "Gelu":
		act.code = actGelu
	case "GeluTanh":
		act.code = actGeluTanh
	default:
		return act, fmt.Errorf("%w: activation %q", ErrUnsupported, a.Activation)
	}
	return act, nil
}

// clipBounds: Clip's min and max inputs must be float32 constants.
func clipBounds(n *ir.Node) error {
	if n.OpType != "Clip" {
		return nil
	}
	for i := 1; i <= 2; i++ {
		if v := input(n, i); v != nil && !clipBound(v) {
			return fmt.Errorf("%w: Clip bound %q is not a float32 constant", ErrUnsupported, v.Name)
		}
	}
	return nil
}

func clipBound(v *ir.Value) bool {
	return v.Const != nil && v.Const.DType == tensor.Float32 && v.Const.Len() == 1
}

// castKernel is the kernel base that casts from to to ("" and false when
// there is none; equal types are an alias).
func castKernel(from, to tensor.DType) (string, bool) {
	switch {
	case from == to:
		return "", true
	case to == tensor.Float32 && from == tensor.Int64:
		return "cast_i64", true
	case to == tensor.Float32 && from == tensor.Int32:
		return "cast_i32", true
	}
	return "", false
}

func castTypes(n *ir.Node) error {
	from, to := dtypeOf(n.Inputs[0]), n.Outputs[0].Type.DType
	if _, ok := castKernel(from, to); ok {
		return nil
	}
	_, okFrom := castCodes[from]
	_, okTo := castCodes[to]
	if !okFrom || !okTo {
		return fmt.Errorf("%w: Cast from %v to %v", ErrUnsupported, from, to)
	}
	return nil
}

// castCodes are the type codes of cast_any (kernels/op_elementwise.cu).
var castCodes = map[tensor.DType]int{
	tensor.Float32: 0, tensor.Float16: 1, tensor.Float64: 2, tensor.Int8: 3, tensor.Int16: 4, tensor.Int32: 5,
	tensor.Int64: 6, tensor.Uint8: 7, tensor.Uint16: 8, tensor.Uint32: 9, tensor.Uint64: 10, tensor.Bool: 11,
}

var unaryOps = map[string]int{"Relu": actRelu, "Sigmoid": actSigmoid, "Tanh": actTanh, "Clip": actClip,
	"LeakyRelu": actLeakyRelu, "HardSigmoid": actHardSigmoid, "HardSwish": actHardSwish, "Gelu": actGelu}

func (c *compiler) binary(s *step, op int) error {
	n := s.node
	ad, err := c.dims(n.Inputs[0])
	if err != nil {
		return err
	}
	bd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	ar, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	br, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	if len(ad) > len(yd) || len(bd) > len(yd) {
		return fmt.Errorf("%w: %v and %v broadcast to %v", ErrGraph, ad, bd, yd)
	}
	r := len(yd)
	meta := []int64{int64(r)}
	for _, d := range yd {
		meta = append(meta, int64(d))
	}
	for _, st := range [][]int{ops.BroadcastStrides(ad, yd), ops.BroadcastStrides(bd, yd)} {
		for _, v := range st {
			meta = append(meta, int64(v))
		}
	}
	total := prod(yd)
	if bn, ok := flatRepeat(ad, bd, yd); ok {
		if w := int64(c.vecWidth()); total%w == 0 && (bn == 1 || bn%w == 0) && aligned16(&yr, &ar, &br) {
			// 16-byte vectors, b's column tracked without division (epilogue.go)
			period := 0
			if bn > 1 && bn/w <= 1024 {
				period = int(bn / w)
			}
			s.launches = []launch{vecLaunch(c.fk("binary_flat_vec"), total/w, period, pArg(yr), pArg(ar), pArg(br), lArg(total), lArg(bn), iArg(op))}
			return nil
		}
		s.launches = []launch{elemLaunch(c.fk("binary_flat"), total, pArg(yr), pArg(ar), pArg(br), lArg(total), lArg(bn), iArg(op))}
		return nil
	}
	// b constant over planes (x * [N, C, 1, 1]), either side for the
	// commutative ops: one block a plane (epilogue.go)
	if planes, hw, bm, ok := planeRepeat(ad, bd, yd); ok && c.planeOK(hw) {
		s.launches = []launch{planeLaunch(c.fk("binary_plane"), planes, hw, c.vecWidth(), pArg(yr), pArg(ar), pArg(br), lArg(planes), lArg(hw), lArg(bm), iArg(op))}
		return nil
	}
	if planes, hw, bm, ok := planeRepeat(bd, ad, yd); ok && c.planeOK(hw) && (op == ewAdd || op == ewMul || op == ewMax || op == ewMin) {
		s.launches = []launch{planeLaunch(c.fk("binary_plane"), planes, hw, c.vecWidth(), pArg(yr), pArg(br), pArg(ar), lArg(planes), lArg(hw), lArg(bm), iArg(op))}
		return nil
	}
	s.launches = []launch{elemLaunch(c.fk("binary"), total, pArg(yr), pArg(ar), pArg(br), pArg(c.meta(meta)), lArg(total), iArg(op))}
	return nil
}

// flatRepeat reports whether a has shape y and b's elements repeat every
// bn elements of y: b's dims, leading 1s dropped, are y's trailing dims.
func flatRepeat(a, b, y []int) (bn int64, ok bool) {
	if !sameDims(a, y) {
		return 0, false
	}
	for len(b) > 0 && b[0] == 1 {
		b = b[1:]
	}
	if len(b) > len(y) || !sameDims(b, y[len(y)-len(b):]) {
		return 0, false
	}
	return max(prod(b), 1), true
}

func (c *compiler) unary(s *step) error {
	n := s.node
	act := activation{code: unaryOps[n.OpType]}
	switch n.OpType {
	case "LeakyRelu", "HardSigmoid", "Gelu": // the CPU's rules (ops/math)
		a, err := ops.ParseActivationAttrs(n, c.g.Opset())
		if err != nil {
			return err
		}
		act.p0, act.p1 = a.Alpha, a.Beta
		if a.Tanh {
			act.code = actGeluTanh
		}
	case "Clip":
		a, err := ops.ParseClipAttrs(n, c.g.Opset())
		if err != nil {
			return err
		}
		act.p0, act.p1 = a.Min, a.Max
		for i, p := range []*float32{&act.p0, &act.p1} {
			v := input(n, i+1)
			if v == nil {
				continue
			}
			if !clipBound(v) {
				return fmt.Errorf("%w: Clip bound %q is not a float32 constant", ErrUnsupported, v.Name)
			}
			*p = v.Const.Float32s()[0]
		}
	}
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	total := prod(yd)
	if w := int64(c.vecWidth()); total%w == 0 && aligned16(&yr, &xr) {
		s.launches = []launch{vecLaunch(c.fk("unary_vec"), total/w, 0, pArg(yr), pArg(xr), lArg(total), iArg(act.code), fArg(act.p0), fArg(act.p1))}
		return nil
	}
	s.launches = []launch{elemLaunch(c.fk("unary"), total, pArg(yr), pArg(xr), lArg(total), iArg(act.code), fArg(act.p0), fArg(act.p1))}
	return nil
}

func (c *compiler) cast(s *step) error {
	n := s.node
	x := n.Inputs[0]
	to := n.Outputs[0].Type.DType
	from := dtypeOf(x)
	if from == to || c.storedType(from) == c.storedType(to) {
		return c.alias(n)
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	total := prod(yd)
	if total == 0 {
		return nil
	}
	if base, ok := castKernel(from, to); ok {
		s.launches = []launch{elemLaunch(c.fk(base), total, pArg(yr), pArg(xr), lArg(total))}
		return nil
	}
	fc, ok1 := castCodes[c.storedType(from)]
	tc, ok2 := castCodes[c.storedType(to)]
	if !ok1 || !ok2 {
		return fmt.Errorf("%w: Cast from %v to %v", ErrUnsupported, from, to)
	}
	s.launches = []launch{elemLaunch("cast_any", total, pArg(yr), pArg(xr), lArg(total), iArg(fc), iArg(tc))}
	return nil
}

// Binary op codes of ew_binary (kernels/op_elementwise.cu); the float32
// binary kernels of nn.cu share the first seven.
const (
	ewAdd = iota
	ewSub
	ewMul
	ewDiv
	ewMax
	ewMin
	ewPow
	ewFmod
	ewMod
	ewAnd
	ewOr
	ewXor
	ewShl
	ewShr
	ewPRelu
)

// Compare codes of ew_compare.
const (
	cmpEqual = iota
	cmpLess
	cmpGreater
	cmpLessOrEqual
	cmpGreaterOrEqual
)

// elementwiseKernels are the elementwise ops and Cast: float32 through the
// kernels of nn.cu (fused into convolutions and products by the
// optimizer), other types through the typed kernels of op_elementwise.cu.
var elementwiseKernels = append([]kernelDef{
	{op: "Add", inputs: 2, check: arithTypes, emit: binaryEmit(ewAdd), layoutAgnostic: true, checkOpset: noLegacyBroadcast},
	{op: "Sub", inputs: 2, check: arithTypes, emit: binaryEmit(ewSub), layoutAgnostic: true, checkOpset: noLegacyBroadcast},
	{op: "Mul", inputs: 2, check: arithTypes, emit: binaryEmit(ewMul), layoutAgnostic: true, checkOpset: noLegacyBroadcast},
	{op: "Div", inputs: 2, check: arithTypes, emit: binaryEmit(ewDiv), layoutAgnostic: true, checkOpset: noLegacyBroadcast},
	{op: "Pow", inputs: 2, check: powTypes, emit: (*compiler).pow, checkOpset: noLegacyBroadcast},
	{op: "Max", check: arithTypes, emit: variadicEmit(ewMax), layoutAgnostic: true},
	{op: "Min", check: arithTypes, emit: variadicEmit(ewMin), layoutAgnostic: true},
	{op: "Sum", check: arithTypes, emit: variadicEmit(ewAdd), layoutAgnostic: true},
	{op: "Mean", check: floatArgs, emit: variadicEmit(ewAdd), layoutAgnostic: true},
	{op: "Mod", inputs: 2, check: arithTypes, emit: (*compiler).mod},
	{op: "BitShift", inputs: 2, check: intArgs, emit: (*compiler).bitShift},
	{op: "BitwiseAnd", inputs: 2, check: intArgs, emit: typedEmit(ewAnd)},
	{op: "BitwiseOr", inputs: 2, check: intArgs, emit: typedEmit(ewOr)},
	{op: "BitwiseXor", inputs: 2, check: intArgs, emit: typedEmit(ewXor)},
	{op: "And", inputs: 2, check: boolArgs, emit: typedEmit(ewAnd), checkOpset: noLegacyBroadcast},
	{op: "Or", inputs: 2, check: boolArgs, emit: typedEmit(ewOr), checkOpset: noLegacyBroadcast},
	{op: "Xor", inputs: 2, check: boolArgs, emit: typedEmit(ewXor), checkOpset: noLegacyBroadcast},
	{op: "Equal", inputs: 2, check: compareTypes, emit: compareEmit(cmpEqual), checkOpset: noLegacyBroadcast},
	{op: "Less", inputs: 2, check: compareTypes, emit: compareEmit(cmpLess), checkOpset: noLegacyBroadcast},
	{op: "Greater", inputs: 2, check: compareTypes, emit: compareEmit(cmpGreater), checkOpset: noLegacyBroadcast},
	{op: "LessOrEqual", inputs: 2, check: compareTypes, emit: compareEmit(cmpLessOrEqual)},
	{op: "GreaterOrEqual", inputs: 2, check: compareTypes, emit: compareEmit(cmpGreaterOrEqual)},
	{op: "Where", inputs: 3, check: whereTypes, emit: (*compiler).where},
	{op: "PRelu", inputs: 2, check: floatArgs, emit: typedEmit(ewPRelu)},
	{op: "QuantizeLinear", inputs: 2, check: quantizeTypes, emit: (*compiler).quantize},
	{op: "DequantizeLinear", inputs: 2, check: quantizeTypes, emit: (*compiler).quantize},
	{op: "Relu", types: float32Only, emit: (*compiler).unary, layoutAgnostic: true},
	{op: "Sigmoid", types: float32Only, emit: (*compiler).unary, layoutAgnostic: true},
	{op: "Tanh", types: float32Only, emit: (*compiler).unary, layoutAgnostic: true},
	{op: "Clip", check: clipTypes, emit: (*compiler).clip, layoutAgnostic: true},
	{op: "LeakyRelu", types: float32Only, emit: (*compiler).unary, layoutAgnostic: true},
	{op: "HardSigmoid", types: float32Only, emit: (*compiler).unary, layoutAgnostic: true},
	{op: "HardSwish", types: float32Only, emit: (*compiler).unary, layoutAgnostic: true},
	{op: "Gelu", types: float32Only, emit: (*compiler).unary, layoutAgnostic: true},
	{domain: "kiln", op: "Gelu", types: float32Only, emit: (*compiler).unary, layoutAgnostic: true},
	{op: "Cast", check: castTypes, emit: (*compiler).cast},
	{op: "CastLike", inputs: 2, check: castTypes, emit: (*compiler).cast},
	{op: "IsNaN", check: floatArgs, emit: (*compiler).isClass},
	{op: "IsInf", check: floatArgs, emit: (*compiler).isClass},
}, mathKernels()...)

// noLegacyBroadcast refuses the broadcasting of binary ops before opset 7
// with an axis (ops.BroadcastAttrs.Legacy: the second input lined up with
// the first from that axis), which the kernels' multidirectional
// broadcasting would read differently.
func noLegacyBroadcast(n *ir.Node, opset int64) error {
	a, err := ops.ParseBroadcastAttrs(n, opset)
	if err != nil {
		return err
	}
	if a.Legacy {
		return fmt.Errorf("%w: %s-%d broadcasting from axis %d", ErrUnsupported, n.OpType, opset, a.Axis)
	}
	return nil
}

// clipTypes: Clip of any numeric type, bounds of its type.
func clipTypes(n *ir.Node) error {
	if err := typeIn(n, 0, numericTypes...); err != nil {
		return err
	}
	return sameTypeIn(n, 1, 2)
}

// clip runs float32 Clip with constant bounds as the unary kernel (as
// before); other types and bounds computed at run time as Max with the
// lower bound and Min with the upper one (ew_binary, broadcasting the
// scalars), in place.
func (c *compiler) clip(s *step) error {
	n := s.node
	if dtypeOf(n.Inputs[0]) == tensor.Float32 && clipBounds(n) == nil {
		return c.unary(s)
	}
	if c.g.Opset() < 11 {
		return fmt.Errorf("%w: Clip-%d of %v", ErrUnsupported, c.g.Opset(), dtypeOf(n.Inputs[0]))
	}
	lo, hi := input(n, 1), input(n, 2)
	x := n.Inputs[0]
	xd, err := c.dims(x)
	if err != nil {
		return err
	}
	sfx, err := c.suffix(dtypeOf(x))
	if err != nil {
		return err
	}
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	total := prod(yd)
	if total == 0 {
		return nil
	}
	if lo == nil && hi == nil {
		return c.copyAll(s, dtypeOf(x), yr, xr, total)
	}
	src := xr
	for _, b := range []struct {
		v  *ir.Value
		op int
	}{{lo, ewMax}, {hi, ewMin}} {
		if b.v == nil {
			continue
		}
		bd, err := c.dims(b.v)
		if err != nil {
			return err
		}
		br, err := c.ref(b.v)
		if err != nil {
			return err
		}
		meta, err := bcastMeta(yd, xd, bd)
		if err != nil {
			return err
		}
		s.launches = append(s.launches, elemLaunch("ew_binary_"+sfx, total, pArg(yr), pArg(src), pArg(br), pArg(c.meta(meta)), lArg(total), iArg(b.op)))
		src = yr
	}
	return nil
}

// mathOps are the unary ops of ew_unary: the kernel's op code, the element
// types it takes (float32 and float16 unless ints), and how to read its
// parameters.
var mathOps = map[string]struct {
	code   int
	ints   bool // also every signed integer type and uint8
	onlyIn []tensor.DType
	params func(a ops.ActivationAttrs) (float32, float32)
}{
	"Neg": {code: 0, ints: true}, "Abs": {code: 1, ints: true}, "Sqrt": {code: 2}, "Exp": {code: 3}, "Log": {code: 4},
	"Reciprocal": {code: 5}, "Floor": {code: 6}, "Ceil": {code: 7}, "Round": {code: 8}, "Sin": {code: 9},
	"Cos": {code: 10}, "Tan": {code: 11}, "Asin": {code: 12}, "Acos": {code: 13}, "Atan": {code: 14},
	"Sinh": {code: 15}, "Cosh": {code: 16}, "Asinh": {code: 17}, "Acosh": {code: 18}, "Atanh": {code: 19},
	"Erf": {code: 20}, "Sign": {code: 21, ints: true}, "Softplus": {code: 22}, "Softsign": {code: 23},
	"Elu":             {code: 24, params: func(a ops.ActivationAttrs) (float32, float32) { return a.Alpha, 0 }},
	"Selu":            {code: 25, params: func(a ops.ActivationAttrs) (float32, float32) { return a.Alpha, a.Gamma }},
	"Celu":            {code: 26, params: func(a ops.ActivationAttrs) (float32, float32) { return a.Alpha, 0 }},
	"ThresholdedRelu": {code: 27, params: func(a ops.ActivationAttrs) (float32, float32) { return a.Alpha, 0 }},
	"Shrink":          {code: 28, params: func(a ops.ActivationAttrs) (float32, float32) { return a.Bias, a.Lambd }},
	"Mish":            {code: 29},
	"BitwiseNot":      {code: 40, onlyIn: unaryIntTypes},
	"Not":             {code: 41, onlyIn: []tensor.DType{tensor.Bool}},
}

// unaryIntTypes are the integer types of ew_unary.
var unaryIntTypes = []tensor.DType{tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64, tensor.Uint8}

// mathKernels are the registry entries of mathOps.
func mathKernels() []kernelDef {
	var defs []kernelDef
	for name := range mathOps {
		defs = append(defs, kernelDef{op: name, check: mathTypes, emit: (*compiler).math})
	}
	return defs
}

func binaryEmit(op int) func(c *compiler, s *step) error {
	return func(c *compiler, s *step) error {
		if len(s.node.Inputs) == 2 && dtypeOf(s.node.Inputs[0]) == tensor.Float32 && dtypeOf(s.node.Inputs[1]) == tensor.Float32 {
			return c.binary(s, op) // nn.cu's kernels: numerics as before
		}
		return c.ewBinary(s, op, 0, 1)
	}
}

func typedEmit(op int) func(c *compiler, s *step) error {
	return func(c *compiler, s *step) error { return c.ewBinary(s, op, 0, 1) }
}

// variadicEmit runs Sum, Mean, Max and Min: one input is a copy, two a
// binary op, more a chain of them accumulating in the output; Mean divides
// at the end.
func variadicEmit(op int) func(c *compiler, s *step) error {
	return func(c *compiler, s *step) error {
		n := s.node
		var ins []int
		for i, v := range n.Inputs {
			if v != nil {
				ins = append(ins, i)
			}
		}
		switch {
		case len(ins) == 0:
			return fmt.Errorf("%w: %s without inputs", ErrGraph, n.OpType)
		case len(ins) == 1 && ins[0] == 0:
			return c.alias(n)
		case len(ins) == 2 && n.OpType != "Mean":
			return binaryEmit(op)(c, s)
		}
		if err := c.ewBinary(s, op, ins[0], ins[1]); err != nil {
			return err
		}
		y := n.Outputs[0]
		yr := ref{buf: bufArena, id: c.storeOf[y]}
		yd := c.mustDims(y)
		sfx, err := c.suffix(y.Type.DType)
		if err != nil {
			return err
		}
		total := prod(yd)
		chain := func(br ref, bd []int, code int) error {
			meta, err := bcastMeta(yd, yd, bd)
			if err != nil {
				return err
			}
			s.launches = append(s.launches, elemLaunch("ew_binary_"+sfx, total, pArg(yr), pArg(yr), pArg(br), pArg(c.meta(meta)), lArg(total), iArg(code)))
			return nil
		}
		for _, i := range ins[2:] {
			br, err := c.ref(n.Inputs[i])
			if err != nil {
				return err
			}
			bd, err := c.dims(n.Inputs[i])
			if err != nil {
				return err
			}
			if err := chain(br, bd, op); err != nil {
				return err
			}
		}
		if n.OpType == "Mean" {
			return chain(c.scalar(y.Type.DType, float64(len(ins))), nil, ewDiv)
		}
		return nil
	}
}

// ewBinary launches ew_binary over inputs a and b of n (broadcast to the
// output) with op code op.
func (c *compiler) ewBinary(s *step, op, a, b int) error {
	n := s.node
	x0, x1 := n.Inputs[a], n.Inputs[b]
	sfx, err := c.suffix(dtypeOf(x0))
	if err != nil {
		return err
	}
	ad, err := c.dims(x0)
	if err != nil {
		return err
	}
	bd, err := c.dims(x1)
	if err != nil {
		return err
	}
	ar, err := c.ref(x0)
	if err != nil {
		return err
	}
	br, err := c.ref(x1)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	meta, err := bcastMeta(yd, ad, bd)
	if err != nil {
		return err
	}
	total := prod(yd)
	if total == 0 {
		return nil
	}
	s.launches = append(s.launches, elemLaunch("ew_binary_"+sfx, total, pArg(yr), pArg(ar), pArg(br), pArg(c.meta(meta)), lArg(total), iArg(op)))
	return nil
}

// powTypes: numeric base and exponent, of one type or with a float base.
func powTypes(n *ir.Node) error {
	if err := typeIn(n, 0, numericTypes...); err != nil {
		return err
	}
	if err := typeIn(n, 1, numericTypes...); err != nil {
		return err
	}
	if a, b := dtypeOf(n.Inputs[0]), dtypeOf(n.Inputs[1]); a != b && !a.IsFloat() {
		return fmt.Errorf("%w: Pow of %v to a %v exponent", ErrUnsupported, a, b)
	}
	return nil
}

// pow runs Pow; an exponent of another type than the (float) base is
// converted to it first, into scratch memory.
func (c *compiler) pow(s *step) error {
	n := s.node
	base, exp := dtypeOf(n.Inputs[0]), dtypeOf(n.Inputs[1])
	if base == exp {
		return binaryEmit(ewPow)(c, s)
	}
	x0, x1 := n.Inputs[0], n.Inputs[1]
	ad, err := c.dims(x0)
	if err != nil {
		return err
	}
	bd, err := c.dims(x1)
	if err != nil {
		return err
	}
	ar, err := c.ref(x0)
	if err != nil {
		return err
	}
	er, err := c.ref(x1)
	if err != nil {
		return err
	}
	fc, ok1 := castCodes[c.storedType(exp)]
	tc, ok2 := castCodes[c.storedType(base)]
	sfx, err := c.suffix(base)
	if err != nil || !ok1 || !ok2 {
		return fmt.Errorf("%w: Pow of %v to a %v exponent", ErrUnsupported, base, exp)
	}
	ne := prod(bd)
	br := c.scratch(ne * c.esize(base))
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	meta, err := bcastMeta(yd, ad, bd)
	if err != nil {
		return err
	}
	total := prod(yd)
	if total == 0 {
		return nil
	}
	s.launches = []launch{elemLaunch("cast_any", ne, pArg(br), pArg(er), lArg(ne), iArg(fc), iArg(tc)),
		elemLaunch("ew_binary_"+sfx, total, pArg(yr), pArg(ar), pArg(br), pArg(c.meta(meta)), lArg(total), iArg(ewPow))}
	return nil
}

func (c *compiler) mod(s *step) error {
	a, err := ops.ParseModAttrs(s.node, c.g.Opset())
	if err != nil {
		return err
	}
	op := ewMod
	if a.Fmod {
		op = ewFmod
	}
	if dt := dtypeOf(s.node.Inputs[0]); op == ewMod && dt.IsFloat() {
		return fmt.Errorf("%w: Mod of %v needs fmod=1", ErrGraph, dt)
	}
	return c.ewBinary(s, op, 0, 1)
}

func (c *compiler) bitShift(s *step) error {
	a, err := ops.ParseBitShiftAttrs(s.node, c.g.Opset())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrGraph, err)
	}
	op := ewShl
	if a.Right {
		op = ewShr
	}
	return c.ewBinary(s, op, 0, 1)
}

func compareEmit(op int) func(c *compiler, s *step) error {
	return func(c *compiler, s *step) error {
		if err := c.ewBinary(s, op, 0, 1); err != nil {
			return err
		}
		if len(s.launches) > 0 {
			l := &s.launches[len(s.launches)-1]
			l.kernel = "ew_compare_" + l.kernel[len("ew_binary_"):]
		}
		return nil
	}
}

func (c *compiler) where(s *step) error {
	n := s.node
	var refs [3]ref
	var dims [3][]int
	for i := range 3 {
		var err error
		if dims[i], err = c.dims(n.Inputs[i]); err != nil {
			return err
		}
		if refs[i], err = c.ref(n.Inputs[i]); err != nil {
			return err
		}
	}
	bs, err := c.byteSuffix(dtypeOf(n.Inputs[1]))
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	meta, err := bcastMeta(yd, dims[0], dims[1], dims[2])
	if err != nil {
		return err
	}
	total := prod(yd)
	if total > 0 {
		s.launches = []launch{elemLaunch("where_"+bs, total, pArg(yr), pArg(refs[0]), pArg(refs[1]), pArg(refs[2]), pArg(c.meta(meta)), lArg(total))}
	}
	return nil
}

// math runs the ops of mathOps.
func (c *compiler) math(s *step) error {
	n := s.node
	m := mathOps[n.OpType]
	var p0, p1 float32
	if m.params != nil {
		a, err := ops.ParseActivationAttrs(n, c.g.Opset()) // the CPU's rules (ops/math)
		if err != nil {
			return err
		}
		p0, p1 = m.params(a)
	}
	sfx, err := c.suffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	total := prod(yd)
	if total > 0 {
		s.launches = []launch{elemLaunch("ew_unary_"+sfx, total, pArg(yr), pArg(xr), lArg(total), iArg(m.code), fArg(p0), fArg(p1))}
	}
	return nil
}

func (c *compiler) isClass(s *step) error {
	n := s.node
	mode := 0
	if n.OpType == "IsInf" {
		a, err := ops.ParseIsInfAttrs(n, c.g.Opset())
		if err != nil {
			return err
		}
		pos, neg := a.DetectPositive, a.DetectNegative
		switch {
		case pos && neg:
			mode = 1
		case pos:
			mode = 2
		case neg:
			mode = 3
		default:
			mode = 4 // neither: all false
		}
	}
	sfx, err := c.suffix(dtypeOf(n.Inputs[0]))
	if err != nil {
		return err
	}
	xr, err := c.ref(n.Inputs[0])
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	total := prod(yd)
	if total > 0 {
		s.launches = []launch{elemLaunch("ew_isclass_"+sfx, total, pArg(yr), pArg(xr), lArg(total), iArg(mode))}
	}
	return nil
}

// arithTypes: every input has input 0's type, a numeric one of the typed
// kernels.
func arithTypes(n *ir.Node) error {
	if err := typeIn(n, 0, numericTypes...); err != nil {
		return err
	}
	idx := make([]int, 0, len(n.Inputs))
	for i := range n.Inputs {
		idx = append(idx, i)
	}
	return sameTypeIn(n, idx...)
}

func floatArgs(n *ir.Node) error {
	if err := typeIn(n, 0, floatTypes...); err != nil {
		return err
	}
	return arithTypes(n)
}

func intArgs(n *ir.Node) error {
	if err := typeIn(n, 0, intTypes...); err != nil {
		return err
	}
	return sameTypeIn(n, 1)
}

func boolArgs(n *ir.Node) error {
	if err := typeIn(n, 0, tensor.Bool); err != nil {
		return err
	}
	return sameTypeIn(n, 1)
}

func compareTypes(n *ir.Node) error {
	if err := typeIn(n, 0, append([]tensor.DType{tensor.Bool}, numericTypes...)...); err != nil {
		return err
	}
	return sameTypeIn(n, 1)
}

func whereTypes(n *ir.Node) error {
	if err := typeIn(n, 0, tensor.Bool); err != nil {
		return err
	}
	if dt := dtypeOf(n.Inputs[1]); !movable(dt) && dt.Size() != 1 {
		return notMovable(dt)
	}
	if dt := dtypeOf(n.Inputs[1]); dt != dtypeOf(n.Inputs[2]) {
		return fmt.Errorf("%w: Where of %v and %v", ErrUnsupported, dt, dtypeOf(n.Inputs[2]))
	}
	return nil
}

func mathTypes(n *ir.Node) error {
	m := mathOps[n.OpType]
	switch {
	case m.onlyIn != nil:
		return typeIn(n, 0, m.onlyIn...)
	case m.ints:
		return typeIn(n, 0, append(append([]tensor.DType{}, floatTypes...), unaryIntTypes...)...)
	}
	return typeIn(n, 0, floatTypes...)
}

// quantCodes are the quantized types of the quantize kernels (cast_any's
// codes).
var quantCodes = map[tensor.DType]int{tensor.Int8: 3, tensor.Int16: 4, tensor.Uint8: 7, tensor.Uint16: 8}

// quantizeTypes: float32 or float16 values and scale, a quantized type of
// quantCodes, per-tensor or per-axis scales (no blocks).
func quantizeTypes(n *ir.Node) error {
	// block_size is read as from opset 21 (a check sees no opset); the
	// emit reads the node's opset
	if a, err := ops.ParseQuantAxisAttrs(n, ops.MaxOpset); err != nil {
		return fmt.Errorf("%w: %v", ErrGraph, err)
	} else if a.BlockSize != 0 {
		return fmt.Errorf("%w: %s with block_size", ErrUnsupported, n.OpType)
	}
	fl, q := 0, n.Outputs[0].Type.DType
	if n.OpType == "DequantizeLinear" {
		fl, q = 1, dtypeOf(n.Inputs[0])
	}
	if _, ok := quantCodes[q]; !ok {
		return fmt.Errorf("%w: %s of %v", ErrUnsupported, n.OpType, q)
	}
	if err := typeIn(n, fl, floatTypes...); err != nil {
		return err
	}
	if n.OpType == "QuantizeLinear" {
		if dtypeOf(n.Inputs[1]) != dtypeOf(n.Inputs[0]) {
			return fmt.Errorf("%w: QuantizeLinear scale of %v for %v", ErrUnsupported, dtypeOf(n.Inputs[1]), dtypeOf(n.Inputs[0]))
		}
	} else if dtypeOf(n.Inputs[1]) != n.Outputs[0].Type.DType {
		return fmt.Errorf("%w: DequantizeLinear scale of %v to %v", ErrUnsupported, dtypeOf(n.Inputs[1]), n.Outputs[0].Type.DType)
	}
	if zp := input(n, 2); zp != nil && dtypeOf(zp) != q {
		return fmt.Errorf("%w: %s zero point of %v", ErrUnsupported, n.OpType, dtypeOf(zp))
	}
	return nil
}

// quantize runs QuantizeLinear and DequantizeLinear, per tensor or per
// slice along axis.
func (c *compiler) quantize(s *step) error {
	n := s.node
	a, err := ops.ParseQuantAxisAttrs(n, c.g.Opset()) // the CPU's rules (ops/nn)
	if err != nil {
		return err
	}
	xd, xr, yr, yd, err := c.inOut(n)
	if err != nil {
		return err
	}
	sd, err := c.dims(n.Inputs[1])
	if err != nil {
		return err
	}
	axlen, inner := int64(1), int64(1)
	if prod(sd) > 1 {
		axis, err := ops.NormAxis(n.OpType, a.Axis, len(xd))
		if err != nil {
			return err
		}
		if len(sd) != 1 || sd[0] != xd[axis] {
			return fmt.Errorf("%w: %s scale %v for %v", ErrGraph, n.OpType, sd, xd)
		}
		axlen, inner = int64(xd[axis]), prod(xd[axis+1:])
	}
	sr, err := c.ref(n.Inputs[1])
	if err != nil {
		return err
	}
	zp := nilArg()
	if v := input(n, 2); v != nil {
		r, err := c.ref(v)
		if err != nil {
			return err
		}
		zp = pArg(r)
	}
	q, base := n.Outputs[0].Type.DType, "quantize"
	if n.OpType == "DequantizeLinear" {
		q, base = dtypeOf(n.Inputs[0]), "dequantize"
	}
	total := prod(yd)
	if total > 0 {
		s.launches = []launch{elemLaunch(c.fk(base), total, pArg(yr), pArg(xr), pArg(sr), zp, lArg(total), lArg(axlen), lArg(inner), iArg(quantCodes[q]))}
	}
	return nil
}
