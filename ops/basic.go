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
	a := AttrsOf(n)
	var v *tensor.Tensor
	switch {
	case a.Has("value"):
		v = a.Tensor("value")
	case a.Has("value_float"):
		v = tensor.FromFloat32([]float32{a.Float("value_float", 0)})
		v.Shape = []int{}
	case a.Has("value_floats"):
		f := a.Floats("value_floats", nil)
		v = tensor.FromFloat32(f, len(f))
	case a.Has("value_int"):
		v = tensor.FromInt64([]int64{a.Int("value_int", 0)})
		v.Shape = []int{}
	case a.Has("value_ints"):
		f := a.Ints("value_ints", nil)
		v = tensor.FromInt64(f, len(f))
	case a.Has("value_string"):
		v = &tensor.Tensor{DType: tensor.String, Shape: []int{}, Strings: []string{a.String("value_string", "")}}
	case a.Has("value_strings"):
		s := a.Strings("value_strings", nil)
		v = &tensor.Tensor{DType: tensor.String, Shape: []int{len(s)}, Strings: s}
	case a.Has("sparse_value"):
		return nil, fmt.Errorf("%w: sparse_value is not supported", ErrBadAttr)
	default:
		return nil, fmt.Errorf("%w: Constant has no value attribute", ErrBadAttr)
	}
	if err := a.Err(); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%w: Constant value is empty", ErrBadAttr)
	}
	return &constantOp{value: v}, nil
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
	Register(Def{Type: "Constant", Traits: HasFloat16, Prepare: prepareConstant})
	Register(Def{Type: "Identity", Prepare: func(*ir.Node, int64) (Kernel, error) { return identityOp{}, nil }, Traits: ViewOfInput0 | HasFloat16 | ElementwiseUnary})
}
