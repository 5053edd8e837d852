package sequence

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// optionalOp is Optional: an optional holding its input, or an empty one
// of the type its type attribute gives when the input is left out.
type optionalOp struct {
	native
	typ *ir.Type // the type attribute; nil when absent
}

func prepareOptional(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseOptionalAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &optionalOp{typ: a.Type}, nil
}

func (k *optionalOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if v := ops.Arg(in, 0); v != nil {
		if v.Type.DType == tensor.Optional {
			return nil, ops.BadInput("Optional: the input is %v, want a tensor or a sequence", v.Type)
		}
		return []ir.Type{ir.OptionalOf(v.Type.Clone())}, nil
	}
	if k.typ == nil {
		return []ir.Type{{DType: tensor.Optional}}, nil
	}
	return []ir.Type{ir.OptionalOf(k.typ.Clone())}, nil
}

func (k *optionalOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	v := ops.Arg(in, 0)
	switch {
	case v == nil:
		return []*tensor.Tensor{tensor.NoneOptional()}, nil
	case v.IsNone():
		return nil, ops.BadInput("Optional: the input is an empty optional, want a tensor or a sequence")
	case v.IsSequence():
		return []*tensor.Tensor{v}, nil
	}
	if err := checkTensor("Optional", "input 0", v); err != nil {
		return nil, err
	}
	return []*tensor.Tensor{own(v)}, nil
}

// hasElementOp is OptionalHasElement: whether its input holds a value (an
// omitted input holds none).
type hasElementOp struct{ native }

func (hasElementOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	return []ir.Type{{DType: tensor.Bool, Shape: ir.Scalar()}}, nil
}

func (hasElementOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	v := ops.Arg(in, 0)
	has := 0.0
	if v != nil && !v.IsNone() {
		has = 1
	}
	return []*tensor.Tensor{tensor.Scalar(tensor.Bool, has)}, nil
}

// getElementOp is OptionalGetElement: the value an optional holds (an
// error when it is empty); a tensor or a sequence passes through.
type getElementOp struct{ native }

func (getElementOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	v := ops.Arg(in, 0)
	if v == nil {
		return nil, ops.BadInput("OptionalGetElement: input 0 is missing")
	}
	if v.Type.DType == tensor.Optional {
		return []ir.Type{v.Type.ElemType()}, nil
	}
	return []ir.Type{v.Type}, nil
}

func (getElementOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	v := ops.Arg(in, 0)
	switch {
	case v == nil:
		return nil, ops.BadInput("OptionalGetElement: input 0 is missing")
	case v.IsNone():
		return nil, ops.BadInput("OptionalGetElement: the optional is empty")
	}
	return []*tensor.Tensor{v}, nil
}

func init() {
	ops.Register(ops.Def{Type: "Optional", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseOptionalAttrs(n, opset) }, Prepare: prepareOptional})
	ops.Register(ops.Def{Type: "OptionalHasElement", Prepare: stateless(hasElementOp{})})
	ops.Register(ops.Def{Type: "OptionalGetElement", Prepare: stateless(getElementOp{})})
}
