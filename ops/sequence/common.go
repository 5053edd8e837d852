package sequence

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// native marks the kernels of this package as handling float16 elements
// themselves (they move elements, never compute on them), so that the
// float16 adapter never wraps them.
type native struct{}

func (native) Float16Native() {}

// NonTensorInputs marks the kernels as taking sequence and optional values.
func (native) NonTensorInputs() {}

// seqArg returns input i of op as a sequence, with a clear error when it is
// missing or not a sequence.
func seqArg(op string, in []*tensor.Tensor, i int) (*tensor.Tensor, error) {
	t := ops.Arg(in, i)
	switch {
	case t == nil:
		return nil, ops.BadInput("%s: input %d (a sequence) is missing", op, i)
	case !t.IsSequence():
		return nil, ops.BadInput("%s: input %d is %s, want a sequence", op, i, kindOf(t))
	}
	return t, nil
}

// tensorArg returns input i of op as a tensor whose storage fits its shape.
func tensorArg(op string, in []*tensor.Tensor, i int) (*tensor.Tensor, error) {
	t := ops.Arg(in, i)
	if t == nil {
		return nil, ops.BadInput("%s: input %d (a tensor) is missing", op, i)
	}
	if err := checkTensor(op, fmt.Sprintf("input %d", i), t); err != nil {
		return nil, err
	}
	return t, nil
}

// kindOf names what t is, for error messages.
func kindOf(t *tensor.Tensor) string {
	switch {
	case t.IsSequence():
		return fmt.Sprintf("a sequence of %d", len(t.Elems))
	case t.IsNone():
		return "an empty optional"
	}
	return fmt.Sprintf("a tensor %v%v", t.DType, t.Shape)
}

// checkTensor verifies that t is a tensor whose storage fits its shape.
func checkTensor(op, what string, t *tensor.Tensor) error {
	if t.IsSequence() || t.IsNone() {
		return ops.BadInput("%s: %s is %s, want a tensor", op, what, kindOf(t))
	}
	if err := tensor.CheckShape(t.Shape); err != nil {
		return ops.BadInput("%s: %s: %v", op, what, err)
	}
	if t.DType == tensor.String {
		if len(t.Strings) != t.Len() {
			return ops.BadInput("%s: %s has %d strings for shape %v", op, what, len(t.Strings), t.Shape)
		}
		return nil
	}
	if !t.DType.Valid() || len(t.Data) != t.Len()*t.DType.Size() {
		return ops.BadInput("%s: %s: %d bytes do not fit %v%v", op, what, len(t.Data), t.DType, t.Shape)
	}
	return nil
}

// position reads a sequence position (a one-element int32 or int64 tensor)
// and maps it into [0, n) (or [0, n] with end, for an insertion), negative
// positions counting from the back.
func position(op string, p *tensor.Tensor, n int, end bool) (int, error) {
	if err := checkTensor(op, "position", p); err != nil {
		return 0, err
	}
	if (p.DType != tensor.Int64 && p.DType != tensor.Int32) || p.Len() != 1 {
		return 0, ops.BadInput("%s: position must be one int32 or int64, got %v%v", op, p.DType, p.Shape)
	}
	v := p.Int(0)
	hi := int64(n) - 1
	if end {
		hi = int64(n)
	}
	if v < -int64(n) || v > hi {
		return 0, ops.IndexError("%s: position %d is out of range [%d, %d] for a sequence of %d", op, v, -n, hi, n)
	}
	if v < 0 {
		v += int64(n)
	}
	return int(v), nil
}

// own returns t, or a copy of it when it may live in an arena: what goes
// into a sequence must stay valid after the arena is reused.
func own(t *tensor.Tensor) *tensor.Tensor { return t.Clone() }

// join returns the most precise tensor type covering a and b (dims where
// they agree, unknown elsewhere; unknown rank when the ranks differ), and
// an error when their element types differ.
func join(op string, a, b ir.Type) (ir.Type, error) {
	out := ir.Type{DType: a.DType}
	switch {
	case a.DType == tensor.Undefined:
		out.DType = b.DType
	case b.DType != tensor.Undefined && a.DType != b.DType:
		return ir.Type{}, ops.BadInput("%s: element types %v and %v differ (a sequence holds one element type)", op, a.DType, b.DType)
	}
	if a.Shape == nil || b.Shape == nil || len(a.Shape) != len(b.Shape) {
		return out, nil
	}
	out.Shape = make(ir.Shape, len(a.Shape))
	for i := range a.Shape {
		if a.Shape[i].Equal(b.Shape[i]) {
			out.Shape[i] = a.Shape[i]
		} else {
			out.Shape[i] = ir.U()
		}
	}
	return out, nil
}

// seqType checks that v (when known) is a sequence and returns the type of
// its elements.
func seqType(op string, v *ir.Value, i int) (ir.Type, error) {
	if v == nil {
		return ir.Type{}, ops.BadInput("%s: input %d (a sequence) is missing", op, i)
	}
	switch v.Type.DType {
	case tensor.Undefined:
		return ir.Type{}, nil
	case tensor.Sequence:
		return v.Type.ElemType(), nil
	}
	return ir.Type{}, ops.BadInput("%s: input %d is %v, want a sequence", op, i, v.Type)
}

// tensorType checks that v (when known) is a tensor type.
func tensorType(op string, v *ir.Value, i int) (ir.Type, error) {
	if v == nil {
		return ir.Type{}, ops.BadInput("%s: input %d (a tensor) is missing", op, i)
	}
	if !v.Type.IsTensor() {
		return ir.Type{}, ops.BadInput("%s: input %d is %v, want a tensor", op, i, v.Type)
	}
	return v.Type, nil
}

// positionType checks the type of a position input.
func positionType(op string, v *ir.Value) error {
	if v == nil {
		return nil
	}
	if dt := v.Type.DType; dt != tensor.Undefined && dt != tensor.Int32 && dt != tensor.Int64 {
		return ops.BadInput("%s: position is %v, want int32 or int64", op, v.Type)
	}
	return nil
}
