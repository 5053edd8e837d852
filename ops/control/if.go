package control

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// ifOp is ONNX If: it runs then_branch or else_branch depending on a
// one-element boolean condition and returns that branch's outputs.
type ifOp struct {
	then, els *ir.Graph
	nOut      int
}

func prepareIf(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseIfAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &ifOp{then: a.Then, els: a.Else, nOut: len(n.Outputs)}
	for _, b := range []struct {
		name string
		g    *ir.Graph
	}{{"then_branch", k.then}, {"else_branch", k.els}} {
		if len(b.g.Inputs) != 0 {
			return nil, badAttr(b.name, "a branch takes no inputs, this one declares %d", len(b.g.Inputs))
		}
		if len(b.g.Outputs) < k.nOut {
			return nil, badAttr(b.name, "has %d outputs, the node has %d", len(b.g.Outputs), k.nOut)
		}
	}
	if len(k.then.Outputs) != len(k.els.Outputs) {
		return nil, badAttr("else_branch", "has %d outputs, then_branch has %d", len(k.els.Outputs), len(k.then.Outputs))
	}
	return k, nil
}

func (k *ifOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if len(in) < 1 || in[0] == nil {
		return nil, errNotTensor("If", "cond")
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && dt != tensor.Bool {
		return nil, badInput("If: cond is %v, want bool", dt)
	}
	thenT, err := inferBody("If then_branch", k.then, nil)
	if err != nil {
		return nil, err
	}
	elseT, err := inferBody("If else_branch", k.els, nil)
	if err != nil {
		return nil, err
	}
	if c := in[0].Const; c != nil && c.Len() == 1 {
		if v, err := truth("If", "cond", c); err == nil {
			if v {
				return thenT[:k.nOut], nil
			}
			return elseT[:k.nOut], nil
		}
	}
	out := make([]ir.Type, k.nOut)
	for i := range out {
		t, err := joinType(thenT[i], elseT[i])
		if err != nil {
			return nil, fmt.Errorf("If output %d: %w", i, err)
		}
		out[i] = t
	}
	return out, nil
}

func (k *ifOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) < 1 {
		return nil, errNotTensor("If", "cond")
	}
	c, err := truth("If", "cond", in[0])
	if err != nil {
		return nil, err
	}
	g := k.els
	if c {
		g = k.then
	}
	if env == nil || env.RunGraph == nil {
		return nil, badInput("If: no subgraph runner (the node must run inside an engine)")
	}
	outs, err := env.RunGraph(g, nil)
	if err != nil {
		return nil, err
	}
	if len(outs) < k.nOut {
		return nil, badInput("If: branch %q returned %d outputs, want %d", g.Name, len(outs), k.nOut)
	}
	return outs[:k.nOut], nil
}

func init() {
	ops.Register(ops.Def{Type: "If", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseIfAttrs(n, opset) }, Traits: ops.HasFloat16, Prepare: prepareIf})
}
