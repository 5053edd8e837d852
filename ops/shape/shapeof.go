package shape

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// shapeOp is ONNX Shape: the input's dimensions [start:end] as int64
// (start and end from opset 15, negative values counting from the end and
// clamped to the rank).
type shapeOp struct{ start, end int64 }

func prepareShape(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseShapeAttrs(n, opset)
	return &shapeOp{start: a.Start, end: a.End}, err
}

// bounds returns the clamped [start, end) for rank.
func (k *shapeOp) bounds(rank int) (int, int) {
	clamp := func(v int64) int {
		if v < 0 {
			v += int64(rank)
		}
		return int(min(max(v, 0), int64(rank)))
	}
	s, e := clamp(k.start), clamp(k.end)
	return s, max(s, e)
}

func (k *shapeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Shape", in, 1); err != nil {
		return nil, err
	}
	t := ir.Type{DType: tensor.Int64, Shape: ir.Shape{ir.U()}}
	if s := in[0].Type.Shape; s != nil {
		lo, hi := k.bounds(len(s))
		t.Shape[0] = ir.D(int64(hi - lo))
	}
	return []ir.Type{t}, nil
}

// ShapeValue returns the input's dims [start:end], symbolic ones included.
func (k *shapeOp) ShapeValue(in []*ir.Value) []ir.Dim {
	v := arg(in, 0)
	if v == nil || v.Type.Shape == nil {
		return nil
	}
	lo, hi := k.bounds(len(v.Type.Shape))
	return append([]ir.Dim{}, v.Type.Shape[lo:hi]...)
}

func (k *shapeOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if x == nil {
		return nil, badInput("Shape: input is missing")
	}
	lo, hi := k.bounds(x.Rank())
	y, err := tensor.Make(tensor.Int64, []int{hi - lo})
	if err != nil {
		return nil, err
	}
	for i, d := range x.Shape[lo:hi] {
		y.Int64s()[i] = int64(d)
	}
	return env.One(y), nil
}

// sizeOp is ONNX Size: the input's element count as an int64 scalar.
type sizeOp struct{}

func (sizeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Size", in, 1); err != nil {
		return nil, err
	}
	return []ir.Type{{DType: tensor.Int64, Shape: ir.Scalar()}}, nil
}

// ShapeValue returns the element count as a (possibly symbolic) dim.
func (sizeOp) ShapeValue(in []*ir.Value) []ir.Dim {
	v := arg(in, 0)
	if v == nil || v.Type.Shape == nil {
		return nil
	}
	return []ir.Dim{ir.MulDims(v.Type.Shape...)}
}

func (sizeOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if x == nil {
		return nil, badInput("Size: input is missing")
	}
	y := tensor.New(tensor.Int64)
	y.Int64s()[0] = int64(x.Len())
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Type: "Shape", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseShapeAttrs(n, opset) }, Traits: ops.HasFloat16 | ops.ShapeOnly, Prepare: prepareShape})
	ops.Register(ops.Def{Type: "Size", Traits: ops.HasFloat16 | ops.ShapeOnly, Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return sizeOp{}, nil }})
}
