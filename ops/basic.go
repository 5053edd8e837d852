package ops

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// constantOp is ONNX Constant: its output is the attribute's value.
type constantOp struct{ value *tensor.Tensor }

func (k *constantOp) Infer([]*ir.Value) ([]ir.Type, error) { return []ir.Type{TypeOf(k.value)}, nil }

func (k *constantOp) Run(*Env, []*tensor.Tensor) ([]*tensor.Tensor, error) {
	return []*tensor.Tensor{k.value}, nil
}

func prepareConstant(n *ir.Node, opset int64) (Kernel, error) {
	a, err := ParseConstantAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &constantOp{value: a.Value}, nil
}

// identityOp passes its input through (sharing storage).
type identityOp struct{}

func (identityOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, fmt.Errorf("%w: missing input", ErrBadInput)
	}
	return []ir.Type{in[0].Type}, nil
}

func (identityOp) Run(_ *Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	return []*tensor.Tensor{in[0]}, nil
}

func (identityOp) ShapeValue(in []*ir.Value) []ir.Dim { return in[0].ShapeValue }

// NonTensorInputs marks Identity as passing sequence and optional values
// through as well.
func (identityOp) NonTensorInputs() {}

func init() {
	Register(Def{Type: "Constant", Attrs: func(n *ir.Node, opset int64) (any, error) { return ParseConstantAttrs(n, opset) }, Traits: HasFloat16, Prepare: prepareConstant})
	Register(Def{Type: "Identity", Prepare: func(*ir.Node, int64) (Kernel, error) { return identityOp{}, nil }, Traits: ViewOfInput0 | HasFloat16 | ElementwiseUnary})
}
