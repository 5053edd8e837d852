package shape

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// expandOp is ONNX Expand: broadcast the input to the (bidirectional)
// broadcast of its shape and the shape input.
type expandOp struct{}

func (expandOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Expand", in, 2); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	target, ok := dimsOf(in[1])
	if !ok || in[0].Type.Shape == nil {
		return []ir.Type{t}, nil
	}
	s, err := ir.Broadcast(in[0].Type.Shape, ir.Shape(target))
	if err != nil {
		return nil, badInput("Expand: %v", err)
	}
	t.Shape = s
	return []ir.Type{t}, nil
}

func (expandOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Expand", x); err != nil {
		return nil, err
	}
	target, err := intVector("Expand", "shape", arg(in, 1))
	if err != nil {
		return nil, err
	}
	ts, err := toInts("Expand", target)
	if err != nil {
		return nil, err
	}
	shape, err := ops.BroadcastShape(x.Shape, ts)
	if err != nil {
		return nil, badInput("Expand: %v", err)
	}
	y, err := ops.NewOutput(env, x.DType, shape)
	if err != nil {
		return nil, err
	}
	copyND(y, 0, strides(shape), x, 0, ops.BroadcastStrides(x.Shape, shape), shape)
	return env.One(y), nil
}

// tileOp is ONNX Tile: the input repeated repeats[i] times along axis i.
// Tile-1 took a scalar tiles count and an axis as inputs instead.
type tileOp struct{ v1 bool }

func (k tileOp) repeats(in []*ir.Value, rank int) ([]ir.Dim, bool) {
	if k.v1 {
		t, ok1 := constInts(arg(in, 1))
		a, ok2 := constInts(arg(in, 2))
		if !ok1 || !ok2 || len(t) != 1 || len(a) != 1 || rank < 0 {
			return nil, false
		}
		r := make([]ir.Dim, rank)
		for i := range r {
			r[i] = ir.D(1)
		}
		if a[0] < 0 || a[0] >= int64(rank) || t[0] < 0 {
			return nil, false
		}
		r[a[0]] = ir.D(t[0])
		return r, true
	}
	return dimsOf(arg(in, 1))
}

func (k tileOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Tile", in, 2); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	s := in[0].Type.Shape
	if s == nil {
		return []ir.Type{t}, nil
	}
	t.Shape = unknownShape(len(s))
	reps, ok := k.repeats(in, len(s))
	if !ok {
		return []ir.Type{t}, nil
	}
	if len(reps) != len(s) {
		return nil, badInput("Tile: %d repeats for rank %d", len(reps), len(s))
	}
	for i, d := range s {
		t.Shape[i] = ir.MulDims(d, reps[i])
	}
	return []ir.Type{t}, nil
}

func (k tileOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Tile", x); err != nil {
		return nil, err
	}
	var reps []int64
	if k.v1 {
		t, err := intVector("Tile", "tiles", arg(in, 1))
		if err != nil {
			return nil, err
		}
		a, err := intVector("Tile", "axis", arg(in, 2))
		if err != nil {
			return nil, err
		}
		if len(t) != 1 || len(a) != 1 || a[0] < 0 || a[0] >= int64(x.Rank()) {
			return nil, badInput("Tile: tiles %v along axis %v of rank %d", t, a, x.Rank())
		}
		reps = make([]int64, x.Rank())
		for i := range reps {
			reps[i] = 1
		}
		reps[a[0]] = t[0]
	} else {
		var err error
		if reps, err = intVector("Tile", "repeats", arg(in, 1)); err != nil {
			return nil, err
		}
	}
	if len(reps) != x.Rank() {
		return nil, badInput("Tile: %d repeats for input %v", len(reps), x.Shape)
	}
	r := x.Rank()
	shape := make([]int, r)
	dims := make([]int, 2*r)
	for i, d := range x.Shape {
		if reps[i] < 0 || reps[i] > tensor.MaxElements {
			return nil, badInput("Tile: bad repeats %v", reps)
		}
		dims[2*i], dims[2*i+1] = int(reps[i]), d
		if d != 0 && dims[2*i] > tensor.MaxElements/d {
			return nil, badInput("Tile: repeats %v are too large", reps)
		}
		shape[i] = d * int(reps[i])
	}
	y, err := ops.NewOutput(env, x.DType, shape)
	if err != nil {
		return nil, err
	}
	os, is := strides(shape), strides(x.Shape)
	dstr := make([]int, 2*r)
	sstr := make([]int, 2*r)
	for i := 0; i < r; i++ {
		dstr[2*i], dstr[2*i+1] = x.Shape[i]*os[i], os[i]
		sstr[2*i], sstr[2*i+1] = 0, is[i]
	}
	copyND(y, 0, dstr, x, 0, sstr, dims)
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Type: "Expand", Traits: ops.HasFloat16, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return expandOp{}, nil }})
	ops.Register(ops.Def{Type: "Tile", Traits: ops.HasFloat16, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		return tileOp{v1: opset < 6}, nil
	}})
}
