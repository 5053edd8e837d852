package control

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// loopOp is ONNX Loop (opsets 1, 11, 13, 16 for tensor values): it runs its
// body while the iteration count is below the optional trip count M and the
// optional condition holds, threading N loop-carried values through the
// iterations and stacking K scan outputs along a new axis 0.
//
// The body takes (iteration_num, cond, v_1..v_N) and returns (cond,
// v_1..v_N, scan_1..scan_K). As in ONNX Runtime and the ONNX reference
// implementation, the condition the body returns is always honored.
type loopOp struct {
	body *ir.Graph
	n, k int // loop-carried values, scan outputs
	// the body declares iteration_num / cond with shape [1] instead of []
	iterRank1, condRank1 bool
}

func prepareLoop(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseBodyAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	body := a.Body
	if len(body.Inputs) < 2 {
		return nil, badAttr("body", "takes %d inputs, want at least 2 (iteration_num, cond)", len(body.Inputs))
	}
	if len(body.Outputs) < 1 {
		return nil, badAttr("body", "has no outputs, want at least cond")
	}
	k := &loopOp{body: body, n: len(body.Inputs) - 2}
	k.k = len(body.Outputs) - 1 - k.n
	if k.k < 0 {
		return nil, badAttr("body", "takes %d loop-carried values but returns only %d outputs after cond", k.n, len(body.Outputs)-1)
	}
	if len(n.Inputs) != 2+k.n && !(k.n == 0 && len(n.Inputs) < 2) {
		return nil, fmt.Errorf("%w: Loop has %d inputs, its body needs M, cond and %d loop-carried values", ops.ErrBadInput, len(n.Inputs), k.n)
	}
	if len(n.Outputs) > k.n+k.k {
		return nil, fmt.Errorf("%w: Loop has %d outputs, its body yields %d", ops.ErrBadInput, len(n.Outputs), k.n+k.k)
	}
	k.iterRank1 = body.Inputs[0].Type.Shape.Rank() == 1
	k.condRank1 = body.Inputs[1].Type.Shape.Rank() == 1
	return k, nil
}

func (k *loopOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	for len(in) < 2 {
		in = append(in, nil) // trailing optional M, cond left out
	}
	if len(in) != 2+k.n {
		return nil, badInput("Loop: %d inputs, want %d", len(in), 2+k.n)
	}
	if m := in[0]; m != nil && m.Type.DType != tensor.Undefined && m.Type.DType != tensor.Int64 {
		return nil, badInput("Loop: M is %v, want int64", m.Type.DType)
	}
	if c := in[1]; c != nil && c.Type.DType != tensor.Undefined && c.Type.DType != tensor.Bool {
		return nil, badInput("Loop: cond is %v, want bool", c.Type.DType)
	}
	bin := make([]ir.Type, 2+k.n)
	bin[0] = scalarInputType(k.body.Inputs[0].Type, tensor.Int64)
	bin[1] = scalarInputType(k.body.Inputs[1].Type, tensor.Bool)
	for i := 0; i < k.n; i++ {
		v := in[2+i]
		if v == nil {
			return nil, errNotTensor("Loop", fmt.Sprintf("loop-carried input %d", i))
		}
		bin[2+i] = carriedType(k.body.Inputs[2+i].Type, v.Type)
	}
	bout, err := inferBody("Loop", k.body, bin)
	if err != nil {
		return nil, err
	}
	out := make([]ir.Type, k.n+k.k)
	for i := 0; i < k.n; i++ {
		// zero iterations return the initial value
		t, err := joinType(in[2+i].Type, bout[1+i])
		if err != nil {
			return nil, fmt.Errorf("Loop loop-carried value %d: %w", i, err)
		}
		out[i] = t
	}
	for j := 0; j < k.k; j++ {
		t := bout[1+k.n+j]
		s := t.Shape
		if s != nil {
			s = append(ir.Shape{ir.U()}, s...)
		}
		out[k.n+j] = ir.Type{DType: t.DType, Shape: s}
	}
	return out, nil
}

// NonTensorInputs marks Loop as carrying sequence and optional values.
func (k *loopOp) NonTensorInputs() {}

func (k *loopOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	for len(in) < 2 {
		in = append(in, nil)
	}
	if len(in) != 2+k.n {
		return nil, badInput("Loop: %d inputs, want %d", len(in), 2+k.n)
	}
	if env == nil || env.RunGraph == nil || env.Ctx == nil {
		return nil, badInput("Loop: no subgraph runner (the node must run inside an engine)")
	}
	maxTrip, hasM := int64(0), in[0] != nil
	if hasM {
		m := in[0]
		if m.Len() != 1 || !m.DType.IsInt() || len(m.Data) < m.DType.Size() {
			return nil, badInput("Loop: M must hold one integer, got %v%v", m.DType, m.Shape)
		}
		maxTrip = m.Int(0)
	}
	cond := true
	if in[1] != nil {
		c, err := truth("Loop", "cond", in[1])
		if err != nil {
			return nil, err
		}
		cond = c
	}
	carried := make([]*tensor.Tensor, k.n)
	for i := range carried {
		if in[2+i] == nil {
			return nil, errNotTensor("Loop", fmt.Sprintf("loop-carried input %d", i))
		}
		carried[i] = in[2+i]
	}
	scans := make([]stacker, k.k)
	for j := range scans {
		scans[j] = stacker{op: "Loop", what: fmt.Sprintf("scan output %d", j)}
	}
	args := make([]*tensor.Tensor, 2+k.n)
	for it := int64(0); (!hasM || it < maxTrip) && cond; it++ {
		if err := env.Ctx.Err(); err != nil {
			return nil, err
		}
		args[0] = scalarTensor(tensor.Int64, float64(it), k.iterRank1)
		args[1] = scalarTensor(tensor.Bool, 1, k.condRank1)
		copy(args[2:], carried)
		outs, err := env.RunGraph(k.body, args)
		if err != nil {
			return nil, err
		}
		if len(outs) != 1+k.n+k.k {
			return nil, badInput("Loop: body returned %d outputs, want %d", len(outs), 1+k.n+k.k)
		}
		if cond, err = truth("Loop", "body output cond", outs[0]); err != nil {
			return nil, err
		}
		for i := range carried {
			if outs[1+i] == nil {
				return nil, errNotTensor("Loop", fmt.Sprintf("body loop-carried output %d", i))
			}
			carried[i] = outs[1+i]
		}
		for j := range scans {
			if err := scans[j].add(outs[1+k.n+j]); err != nil {
				return nil, err
			}
		}
	}
	res := make([]*tensor.Tensor, k.n+k.k)
	copy(res, carried)
	for j := range scans {
		t, err := scans[j].stack(0, false, k.body.Outputs[1+k.n+j].Type)
		if err != nil {
			return nil, err
		}
		res[k.n+j] = t
	}
	return res, nil
}

func init() {
	ops.Register(ops.Def{Type: "Loop", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseBodyAttrs(n, opset) }, Traits: ops.HasFloat16, Prepare: prepareLoop})
}
