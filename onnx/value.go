package onnx

import (
	"fmt"
	"os"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// maxValueDepth bounds the nesting of optionals and sequences in a value
// file, so that a crafted file cannot recurse without end.
const maxValueDepth = 8

// DecodeValue decodes one serialized value of type t: a TensorProto for a
// tensor type, a SequenceProto for a sequence type and an OptionalProto for
// an optional type (see ValueFromProto). It returns the value and its name.
func DecodeValue(b []byte, t ir.Type) (*tensor.Tensor, string, error) {
	switch t.DType {
	case tensor.Sequence:
		sp, err := DecodeSequence(b)
		if err != nil {
			return nil, "", err
		}
		v, err := SequenceFromProto(sp)
		return v, sp.Name, err
	case tensor.Optional:
		op, err := DecodeOptional(b)
		if err != nil {
			return nil, "", err
		}
		if op.TensorValue != nil && t.Elem != nil && t.Elem.DType == tensor.Sequence {
			// an optional sequence cannot hold a tensor: this is the
			// sequence itself, as some ONNX test data holds it (field 3 is
			// then tensor_values)
			return DecodeValue(b, *t.Elem)
		}
		v, err := OptionalFromProto(op)
		return v, op.Name, err
	}
	tp, err := DecodeTensor(b)
	if err != nil {
		return nil, "", err
	}
	v, err := TensorFromProto(tp, nil)
	return v, tp.Name, err
}

// SequenceFromProto returns the sequence value (tensor.Sequence) a
// SequenceProto of tensors holds.
func SequenceFromProto(sp *SequenceProto) (*tensor.Tensor, error) {
	return sequenceFromProto(sp, 0)
}

func sequenceFromProto(sp *SequenceProto, depth int) (*tensor.Tensor, error) {
	if depth > maxValueDepth {
		return nil, fmt.Errorf("%w: values nested more than %d deep", ErrMalformed, maxValueDepth)
	}
	switch {
	case len(sp.SparseTensorValues) > 0, len(sp.SequenceValues) > 0, len(sp.MapValues) > 0, len(sp.OptionalValues) > 0:
		return nil, fmt.Errorf("%w: sequence %q holds values other than tensors (only sequences of tensors are supported)", ErrUnsupported, sp.Name)
	case sp.ElemType != ElemUndefined && sp.ElemType != ElemTensor:
		return nil, fmt.Errorf("%w: sequence %q has element kind %d (only sequences of tensors are supported)", ErrUnsupported, sp.Name, sp.ElemType)
	}
	elems := make([]*tensor.Tensor, len(sp.TensorValues))
	for i, tp := range sp.TensorValues {
		t, err := TensorFromProto(tp, nil)
		if err != nil {
			return nil, fmt.Errorf("sequence %q element %d: %w", sp.Name, i, err)
		}
		if i > 0 && t.DType != elems[0].DType {
			return nil, fmt.Errorf("%w: sequence %q element %d is %v, element 0 is %v (a sequence holds one element type)", ErrMalformed, sp.Name, i, t.DType, elems[0].DType)
		}
		elems[i] = t
	}
	return tensor.NewSequence(elems), nil
}

// OptionalFromProto returns the value an OptionalProto holds: the tensor or
// the sequence itself, or an empty optional (tensor.Optional).
func OptionalFromProto(op *OptionalProto) (*tensor.Tensor, error) {
	return optionalFromProto(op, 0)
}

func optionalFromProto(op *OptionalProto, depth int) (*tensor.Tensor, error) {
	if depth > maxValueDepth {
		return nil, fmt.Errorf("%w: values nested more than %d deep", ErrMalformed, maxValueDepth)
	}
	switch {
	case op.TensorValue != nil:
		t, err := TensorFromProto(op.TensorValue, nil)
		if err != nil {
			return nil, fmt.Errorf("optional %q: %w", op.Name, err)
		}
		return t, nil
	case op.SequenceValue != nil:
		return sequenceFromProto(op.SequenceValue, depth+1)
	case op.SparseTensorValue != nil, op.MapValue != nil, op.OptionalValue != nil:
		return nil, fmt.Errorf("%w: optional %q holds neither a tensor nor a sequence", ErrUnsupported, op.Name)
	}
	return tensor.NoneOptional(), nil
}

// ValueToProto encodes a value as DecodeValue reads it back: a
// TensorProto, a SequenceProto (for a tensor.Sequence) or an OptionalProto
// (for an empty optional, or any value when optional is set).
func ValueToProto(name string, v *tensor.Tensor, optional bool) (interface{ Marshal() []byte }, error) {
	if v == nil {
		return nil, fmt.Errorf("%w: no value", ErrMalformed)
	}
	if optional || v.IsNone() {
		op := &OptionalProto{Name: name}
		switch {
		case v.IsNone():
		case v.IsSequence():
			sp, err := sequenceProto("", v)
			if err != nil {
				return nil, err
			}
			op.ElemType, op.SequenceValue = ElemSequence, sp
		default:
			op.ElemType, op.TensorValue = ElemTensor, TensorToProto("", v)
		}
		return op, nil
	}
	if v.IsSequence() {
		return sequenceProto(name, v)
	}
	return TensorToProto(name, v), nil
}

func sequenceProto(name string, v *tensor.Tensor) (*SequenceProto, error) {
	sp := &SequenceProto{Name: name, ElemType: ElemTensor}
	for i, e := range v.Elems {
		if e == nil || e.IsSequence() || e.IsNone() {
			return nil, fmt.Errorf("%w: sequence element %d is not a tensor", ErrUnsupported, i)
		}
		sp.TensorValues = append(sp.TensorValues, TensorToProto("", e))
	}
	return sp, nil
}

// SaveValue writes v, a value of type t, to path as DecodeValue reads it: a
// TensorProto, a SequenceProto, or an OptionalProto for an optional type.
func SaveValue(path, name string, v *tensor.Tensor, t ir.Type) error {
	if t.IsTensor() && !v.IsSequence() && !v.IsNone() {
		return SaveTensor(path, name, v)
	}
	m, err := ValueToProto(name, v, t.DType == tensor.Optional)
	if err != nil {
		return fmt.Errorf("onnx: save value %q: %w", name, err)
	}
	return os.WriteFile(path, m.Marshal(), 0o644)
}
