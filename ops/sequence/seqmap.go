package sequence

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// mapOp is SequenceMap: body runs once per element of the input sequence;
// each further input is, per run, the element of the same position of a
// sequence, or a tensor given whole to every run. Output j is the
// sequence of the body's output j.
type mapOp struct {
	native
	body *ir.Graph
}

func prepareMap(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseBodyAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	body := a.Body
	if len(n.Inputs) == 0 || n.Inputs[0] == nil {
		return nil, ops.BadInput("SequenceMap: input 0 (a sequence) is missing")
	}
	if len(body.Inputs) != len(n.Inputs) {
		return nil, fmt.Errorf("%w %q: the body takes %d inputs, the node has %d", ops.ErrBadAttr, "body", len(body.Inputs), len(n.Inputs))
	}
	if len(body.Outputs) < len(n.Outputs) {
		return nil, fmt.Errorf("%w %q: the body has %d outputs, the node has %d", ops.ErrBadAttr, "body", len(body.Outputs), len(n.Outputs))
	}
	return &mapOp{body: body}, nil
}

func (k *mapOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if _, err := seqType("SequenceMap", ops.Arg(in, 0), 0); err != nil {
		return nil, err
	}
	for i, v := range in {
		if v == nil {
			return nil, ops.BadInput("SequenceMap: input %d is missing", i)
		}
		var t ir.Type
		switch v.Type.DType {
		case tensor.Sequence:
			t = v.Type.ElemType()
		case tensor.Optional:
			return nil, ops.BadInput("SequenceMap: input %d is %v, want a sequence or a tensor", i, v.Type)
		default:
			t = v.Type
		}
		bi := k.body.Inputs[i]
		if t.DType == tensor.Undefined {
			t.DType = bi.Type.DType
		}
		if t.Shape == nil {
			t.Shape = bi.Type.Shape.Clone()
		}
		bi.Type = t
	}
	if _, err := ops.InferGraph(k.body); err != nil {
		return nil, fmt.Errorf("SequenceMap body %q: %w", k.body.Name, err)
	}
	out := make([]ir.Type, len(k.body.Outputs))
	for i, v := range k.body.Outputs {
		if v == nil {
			return nil, ops.BadInput("SequenceMap: body %q has a missing output %d", k.body.Name, i)
		}
		if !v.Type.IsTensor() {
			return nil, ops.BadInput("SequenceMap: body output %d is %v, want a tensor", i, v.Type)
		}
		out[i] = ir.SequenceOf(v.Type.Clone())
	}
	return out, nil
}

func (k *mapOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, err := seqArg("SequenceMap", in, 0)
	if err != nil {
		return nil, err
	}
	if env == nil || env.RunGraph == nil {
		return nil, ops.BadInput("SequenceMap: no subgraph runner (the node must run inside an engine)")
	}
	n := len(s.Elems)
	for i, v := range in {
		switch {
		case v == nil:
			return nil, ops.BadInput("SequenceMap: input %d is missing", i)
		case v.IsNone():
			return nil, ops.BadInput("SequenceMap: input %d is an empty optional, want a sequence or a tensor", i)
		case v.IsSequence() && len(v.Elems) != n:
			return nil, ops.BadInput("SequenceMap: input %d is a sequence of %d, input 0 of %d (sequences must have the same length)", i, len(v.Elems), n)
		}
	}
	outs := make([][]*tensor.Tensor, len(k.body.Outputs))
	args := make([]*tensor.Tensor, len(in))
	for e := 0; e < n; e++ {
		if env.Ctx != nil {
			if err := env.Ctx.Err(); err != nil {
				return nil, err
			}
		}
		for i, v := range in {
			args[i] = v
			if v.IsSequence() {
				args[i] = v.Elems[e]
			}
		}
		res, err := env.RunGraph(k.body, args)
		if err != nil {
			return nil, err
		}
		if len(res) != len(outs) {
			return nil, ops.BadInput("SequenceMap: body returned %d outputs, want %d", len(res), len(outs))
		}
		for j, t := range res {
			if t == nil {
				return nil, ops.BadInput("SequenceMap: body output %d is missing", j)
			}
			if err := checkTensor("SequenceMap", fmt.Sprintf("body output %d", j), t); err != nil {
				return nil, err
			}
			if len(outs[j]) > 0 && outs[j][0].DType != t.DType {
				return nil, ops.BadInput("SequenceMap: body output %d is %v for element %d, %v for element 0", j, t.DType, e, outs[j][0].DType)
			}
			outs[j] = append(outs[j], own(t))
		}
	}
	res := make([]*tensor.Tensor, len(outs))
	for j := range outs {
		res[j] = tensor.NewSequence(outs[j])
	}
	return res, nil
}

func init() {
	ops.Register(ops.Def{Type: "SequenceMap", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseBodyAttrs(n, opset) }, Prepare: prepareMap})
}
