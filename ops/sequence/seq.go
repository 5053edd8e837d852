package sequence

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// constructOp is SequenceConstruct: a sequence of its inputs, which must
// share one element type.
type constructOp struct{ native }

func (constructOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) == 0 {
		return nil, ops.BadInput("SequenceConstruct takes at least one input")
	}
	var elem ir.Type
	for i, v := range in {
		t, err := tensorType("SequenceConstruct", v, i)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			elem = t.Clone()
			continue
		}
		if elem, err = join("SequenceConstruct", elem, t); err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
	}
	return []ir.Type{ir.SequenceOf(elem)}, nil
}

func (constructOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) == 0 {
		return nil, ops.BadInput("SequenceConstruct takes at least one input")
	}
	elems := make([]*tensor.Tensor, len(in))
	for i := range in {
		t, err := tensorArg("SequenceConstruct", in, i)
		if err != nil {
			return nil, err
		}
		if t.DType != in[0].DType {
			return nil, ops.BadInput("SequenceConstruct: input %d is %v, input 0 is %v (a sequence holds one element type)", i, t.DType, in[0].DType)
		}
		elems[i] = own(t)
	}
	return []*tensor.Tensor{tensor.NewSequence(elems)}, nil
}

// emptyOp is SequenceEmpty: an empty sequence of element type dtype
// (float32 by default).
type emptyOp struct {
	native
	dt tensor.DType
}

func prepareEmpty(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseSequenceEmptyAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return emptyOp{dt: a.DType}, nil
}

func (k emptyOp) Infer([]*ir.Value) ([]ir.Type, error) {
	return []ir.Type{ir.SequenceOf(ir.Type{DType: k.dt})}, nil
}

func (k emptyOp) Run(*ops.Env, []*tensor.Tensor) ([]*tensor.Tensor, error) {
	return []*tensor.Tensor{tensor.NewSequence(nil)}, nil
}

// atOp is SequenceAt: the element at a position (negative counts from the
// back).
type atOp struct{ native }

func (atOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	elem, err := seqType("SequenceAt", ops.Arg(in, 0), 0)
	if err != nil {
		return nil, err
	}
	if ops.Arg(in, 1) == nil {
		return nil, ops.BadInput("SequenceAt: position is missing")
	}
	if err := positionType("SequenceAt", in[1]); err != nil {
		return nil, err
	}
	return []ir.Type{elem}, nil
}

func (atOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, err := seqArg("SequenceAt", in, 0)
	if err != nil {
		return nil, err
	}
	p, err := tensorArg("SequenceAt", in, 1)
	if err != nil {
		return nil, err
	}
	i, err := position("SequenceAt", p, len(s.Elems), false)
	if err != nil {
		return nil, err
	}
	return []*tensor.Tensor{s.Elems[i]}, nil
}

// insertOp is SequenceInsert: a copy of the sequence with a tensor inserted
// at a position (at the back by default).
type insertOp struct{ native }

func (insertOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	elem, err := seqType("SequenceInsert", ops.Arg(in, 0), 0)
	if err != nil {
		return nil, err
	}
	t, err := tensorType("SequenceInsert", ops.Arg(in, 1), 1)
	if err != nil {
		return nil, err
	}
	if err := positionType("SequenceInsert", ops.Arg(in, 2)); err != nil {
		return nil, err
	}
	if elem.DType == tensor.Undefined && elem.Shape == nil {
		// nothing known of the elements (a sequence whose elements may have
		// any shape): keep the element type only
		return []ir.Type{ir.SequenceOf(ir.Type{DType: t.DType})}, nil
	}
	j, err := join("SequenceInsert", elem, t)
	if err != nil {
		return nil, err
	}
	return []ir.Type{ir.SequenceOf(j)}, nil
}

func (insertOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, err := seqArg("SequenceInsert", in, 0)
	if err != nil {
		return nil, err
	}
	t, err := tensorArg("SequenceInsert", in, 1)
	if err != nil {
		return nil, err
	}
	if len(s.Elems) > 0 && s.Elems[0].DType != t.DType {
		return nil, ops.BadInput("SequenceInsert: the tensor is %v, the sequence holds %v (a sequence holds one element type)", t.DType, s.Elems[0].DType)
	}
	at := len(s.Elems)
	if p := ops.Arg(in, 2); p != nil {
		if at, err = position("SequenceInsert", p, len(s.Elems), true); err != nil {
			return nil, err
		}
	}
	elems := make([]*tensor.Tensor, 0, len(s.Elems)+1)
	elems = append(elems, s.Elems[:at]...)
	elems = append(elems, own(t))
	elems = append(elems, s.Elems[at:]...)
	return []*tensor.Tensor{tensor.NewSequence(elems)}, nil
}

// eraseOp is SequenceErase: a copy of the sequence without the element at a
// position (the last by default).
type eraseOp struct{ native }

func (eraseOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	elem, err := seqType("SequenceErase", ops.Arg(in, 0), 0)
	if err != nil {
		return nil, err
	}
	if err := positionType("SequenceErase", ops.Arg(in, 1)); err != nil {
		return nil, err
	}
	return []ir.Type{ir.SequenceOf(elem)}, nil
}

func (eraseOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, err := seqArg("SequenceErase", in, 0)
	if err != nil {
		return nil, err
	}
	n := len(s.Elems)
	if n == 0 {
		return nil, ops.IndexError("SequenceErase: the sequence is empty")
	}
	at := n - 1
	if p := ops.Arg(in, 1); p != nil {
		if at, err = position("SequenceErase", p, n, false); err != nil {
			return nil, err
		}
	}
	elems := make([]*tensor.Tensor, 0, n-1)
	elems = append(elems, s.Elems[:at]...)
	elems = append(elems, s.Elems[at+1:]...)
	return []*tensor.Tensor{tensor.NewSequence(elems)}, nil
}

// lengthOp is SequenceLength: the number of elements, an int64 scalar.
type lengthOp struct{ native }

func (lengthOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if _, err := seqType("SequenceLength", ops.Arg(in, 0), 0); err != nil {
		return nil, err
	}
	return []ir.Type{{DType: tensor.Int64, Shape: ir.Scalar()}}, nil
}

func (lengthOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, err := seqArg("SequenceLength", in, 0)
	if err != nil {
		return nil, err
	}
	return []*tensor.Tensor{tensor.Scalar(tensor.Int64, float64(len(s.Elems)))}, nil
}

func stateless(k ops.Kernel) func(*ir.Node, int64) (ops.Kernel, error) {
	return func(*ir.Node, int64) (ops.Kernel, error) { return k, nil }
}

func init() {
	ops.Register(ops.Def{Type: "SequenceConstruct", Prepare: stateless(constructOp{})})
	ops.Register(ops.Def{Type: "SequenceEmpty", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseSequenceEmptyAttrs(n, opset) }, Prepare: prepareEmpty})
	ops.Register(ops.Def{Type: "SequenceAt", Prepare: stateless(atOp{})})
	ops.Register(ops.Def{Type: "SequenceInsert", Prepare: stateless(insertOp{})})
	ops.Register(ops.Def{Type: "SequenceErase", Prepare: stateless(eraseOp{})})
	ops.Register(ops.Def{Type: "SequenceLength", Prepare: stateless(lengthOp{})})
}
