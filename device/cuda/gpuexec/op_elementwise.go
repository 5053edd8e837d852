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
	a := ops.AttrsOf(n)
	name := a.String("activation", "")
	p := a.Floats("activation_params", nil)
	var act activation
	var def []float32
	switch name {
	case "":
	case "Relu":
		act.code = actRelu
	case "Clip":
		act.code, def = actClip, []float32{-inf, inf}
	case "Sigmoid":
		act.code = actSigmoid
	case "SiLU":
		act.code = actSiLU
	case "HardSwish":
		act.code = actHardSwish
	case "LeakyRelu":
		act.code, def = actLeakyRelu, []float32{0.01, 0}
	case "HardSigmoid":
		act.code, def = actHardSigmoid, []float32{0.2, 0.5}
	case "Gelu":
		act.code = actGelu
	case "GeluTanh":
		act.code = actGeluTanh
	default:
		return act, fmt.Errorf("%w: activation %q", ErrUnsupported, name)
	}
	if p == nil {
		p = def
	}
	if len(p) > 0 {
		act.p0 = p[0]
	}
	if len(p) > 1 {
		act.p1 = p[1]
	}
	return act, a.Err()
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
	if _, ok := castKernel(from, to); !ok {
		return fmt.Errorf("%w: Cast from %v to %v", ErrUnsupported, from, to)
	}
	return nil
}

var binaryOps = map[string]int{"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Max": 4, "Min": 5, "Pow": 6}

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
		s.launches = []launch{elemLaunch(c.fk("binary_flat"), total, pArg(yr), pArg(ar), pArg(br), lArg(total), lArg(bn), iArg(op))}
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
	a := ops.AttrsOf(n)
	act := activation{code: unaryOps[n.OpType]}
	switch n.OpType {
	case "LeakyRelu":
		act.p0 = a.Float("alpha", 0.01)
	case "HardSigmoid":
		act.p0, act.p1 = a.Float("alpha", 0.2), a.Float("beta", 0.5)
	case "Gelu":
		if a.String("approximate", "none") == "tanh" {
			act.code = actGeluTanh
		}
	case "Clip":
		act.p0, act.p1 = a.Float("min", -inf), a.Float("max", inf)
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
	if err := a.Err(); err != nil {
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
	s.launches = []launch{elemLaunch(c.fk("unary"), total, pArg(yr), pArg(xr), lArg(total), iArg(act.code), fArg(act.p0), fArg(act.p1))}
	return nil
}

func (c *compiler) cast(s *step) error {
	n := s.node
	x := n.Inputs[0]
	to := n.Outputs[0].Type.DType
	from := dtypeOf(x)
	if from == to {
		return c.alias(n)
	}
	base, ok := castKernel(from, to)
	if !ok {
		return fmt.Errorf("%w: Cast from %v to %v", ErrUnsupported, from, to)
	}
	k := c.fk(base)
	xr, err := c.ref(x)
	if err != nil {
		return err
	}
	yr, yd, err := c.out(n, 0)
	if err != nil {
		return err
	}
	total := prod(yd)
	s.launches = []launch{elemLaunch(k, total, pArg(yr), pArg(xr), lArg(total))}
	return nil
}

// elementwiseKernels are the elementwise ops and Cast.
var elementwiseKernels = []kernelDef{
	{op: "Add", inputs: 2, f32: []int{0, 1}, emit: binaryEmit(0)},
	{op: "Sub", inputs: 2, f32: []int{0, 1}, emit: binaryEmit(1)},
	{op: "Mul", inputs: 2, f32: []int{0, 1}, emit: binaryEmit(2)},
	{op: "Div", inputs: 2, f32: []int{0, 1}, emit: binaryEmit(3)},
	{op: "Max", inputs: 2, f32: []int{0, 1}, emit: binaryEmit(4)},
	{op: "Min", inputs: 2, f32: []int{0, 1}, emit: binaryEmit(5)},
	{op: "Pow", inputs: 2, f32: []int{0, 1}, emit: binaryEmit(6)},
	{op: "Relu", f32: []int{0}, emit: (*compiler).unary},
	{op: "Sigmoid", f32: []int{0}, emit: (*compiler).unary},
	{op: "Tanh", f32: []int{0}, emit: (*compiler).unary},
	{op: "Clip", f32: []int{0}, check: clipBounds, emit: (*compiler).unary},
	{op: "LeakyRelu", f32: []int{0}, emit: (*compiler).unary},
	{op: "HardSigmoid", f32: []int{0}, emit: (*compiler).unary},
	{op: "HardSwish", f32: []int{0}, emit: (*compiler).unary},
	{op: "Gelu", f32: []int{0}, emit: (*compiler).unary},
	{domain: "kiln", op: "Gelu", f32: []int{0}, emit: (*compiler).unary},
	{op: "Cast", check: castTypes, emit: (*compiler).cast},
}

func binaryEmit(op int) func(c *compiler, s *step) error {
	return func(c *compiler, s *step) error { return c.binary(s, op) }
}
