package math

import (
	"fmt"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// variadic is Min, Max, Sum or Mean of one or more inputs of one type, with
// multidirectional broadcasting.
type variadic struct {
	name  string
	op    arithOp // opMin, opMax or opAdd
	mean  bool    // divide the sum by the input count
	float bool    // float inputs only
}

func (k *variadic) accepts(dt tensor.DType) bool {
	if k.float {
		return dt.IsFloat()
	}
	return numericTypes.has(dt)
}

func (k *variadic) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := checkInputs(k.name, in, len(in), len(in)); err != nil {
		return nil, err
	}
	if len(in) == 0 {
		return nil, fmt.Errorf("%w: %s needs at least one input", ops.ErrBadInput, k.name)
	}
	dt := tensor.Undefined
	for _, v := range in {
		if err := sameDType(k.name, dt, v.Type.DType); err != nil {
			return nil, err
		}
		if v.Type.DType != tensor.Undefined {
			dt = v.Type.DType
		}
	}
	if dt != tensor.Undefined && !k.accepts(dt) {
		return nil, badType(k.name, dt)
	}
	return inferBroadcast(dt, in...)
}

func (k *variadic) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := checkTensors(k.name, in, len(in), len(in)); err != nil {
		return nil, err
	}
	if len(in) == 0 {
		return nil, fmt.Errorf("%w: %s needs at least one input", ops.ErrBadInput, k.name)
	}
	dt := in[0].DType
	for _, t := range in {
		if t.DType != dt {
			return nil, fmt.Errorf("%w: %s of %v and %v", ops.ErrBadInput, k.name, dt, t.DType)
		}
	}
	if !k.accepts(dt) {
		return nil, badType(k.name, dt)
	}
	if len(in) == 1 {
		return []*tensor.Tensor{in[0]}, nil
	}
	count := len(in)
	out, err := broadcastOut(env, dt, in...)
	if err != nil {
		return nil, err
	}
	if tensor.NumElements(in[0].Shape) == out.Len() {
		// out = in0 op in1 directly, without a first copy
		if err := arithInto(k.name, k.op, in[0], in[1], out); err != nil {
			return nil, err
		}
		in = in[2:]
	} else {
		expandInto(out, in[0])
		in = in[1:]
	}
	for _, t := range in {
		if err := arithInto(k.name, k.op, out, t, out); err != nil {
			return nil, err
		}
	}
	if k.mean {
		if err := arithInto(k.name, opDiv, out, tensor.Scalar(dt, float64(count)), out); err != nil {
			return nil, err
		}
	}
	return env.One(out), nil
}

func init() {
	for _, r := range []struct {
		k *variadic
		t ops.Traits
	}{
		{&variadic{name: "Min", op: opMin}, ops.ElementwiseBinary},
		{&variadic{name: "Max", op: opMax}, ops.ElementwiseBinary},
		{&variadic{name: "Sum", op: opAdd}, 0},
		{&variadic{name: "Mean", op: opAdd, mean: true, float: true}, 0},
	} {
		k := r.k
		// one input is returned as it is: the output may be it
		ops.Register(ops.Def{Type: k.name, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return k, nil }, Traits: ops.MayViewInput0 | r.t})
	}
}
