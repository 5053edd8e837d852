package shape

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// constantOfShapeOp is ONNX ConstantOfShape: a tensor of the input's shape
// filled with the value attribute (float32 0 by default).
type constantOfShapeOp struct{ value *tensor.Tensor }

func prepareConstantOfShape(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseConstantOfShapeAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &constantOfShapeOp{value: a.Value}, nil
}

func (k *constantOfShapeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("ConstantOfShape", in, 1); err != nil {
		return nil, err
	}
	t := ir.Type{DType: k.value.DType}
	if d, ok := dimsOf(in[0]); ok {
		t.Shape = ir.Shape(d)
	}
	return []ir.Type{t}, nil
}

func (k *constantOfShapeOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	s, err := intVector("ConstantOfShape", "shape", arg(in, 0))
	if err != nil {
		return nil, err
	}
	shape, err := toInts("ConstantOfShape", s)
	if err != nil {
		return nil, err
	}
	y, err := ops.NewOutput(env, k.value.DType, shape)
	if err != nil {
		return nil, err
	}
	fillValue(y, 0, y.Len(), k.value)
	return env.One(y), nil
}

// rangeOp is ONNX Range: start, start+delta, ... up to limit (exclusive).
type rangeOp struct{}

// rangeCount returns the number of elements of a range, or an error.
func rangeCount(start, limit, delta float64) (int, error) {
	if delta == 0 || math.IsNaN(start) || math.IsNaN(limit) || math.IsNaN(delta) {
		return 0, badInput("Range: start %g, limit %g, delta %g", start, limit, delta)
	}
	n := math.Ceil((limit - start) / delta)
	if n <= 0 {
		return 0, nil
	}
	if n > tensor.MaxElements || math.IsInf(n, 0) {
		return 0, badInput("Range: %g elements", n)
	}
	return int(n), nil
}

// rangeCountInt is rangeCount for integer types, exact.
func rangeCountInt(start, limit, delta int64) (int, error) {
	if delta == 0 {
		return 0, badInput("Range: delta is 0")
	}
	diff := limit - start
	if (diff > 0) != (delta > 0) || diff == 0 {
		return 0, nil
	}
	var n int64
	if delta > 0 {
		n = (diff-1)/delta + 1
	} else {
		n = (diff+1)/delta + 1
	}
	if n > tensor.MaxElements {
		return 0, badInput("Range: %d elements", n)
	}
	return int(n), nil
}

func (rangeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Range", in, 3); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType, Shape: ir.Shape{ir.U()}}
	if in[0].Const != nil && in[1].Const != nil && in[2].Const != nil {
		if outs, err := (rangeOp{}).Run(nil, []*tensor.Tensor{in[0].Const, in[1].Const, in[2].Const}); err == nil {
			t.Shape[0] = ir.D(int64(outs[0].Len()))
		}
	} else if in[0].Const != nil && in[2].Const != nil && in[0].Const.Len() == 1 && in[2].Const.Len() == 1 &&
		in[0].Const.Float(0) == 0 && in[2].Const.Float(0) == 1 && len(in[1].ShapeValue) == 1 {
		// Range(0, n, 1) with a symbolic n (e.g. seq from Shape) has n elements
		t.Shape[0] = in[1].ShapeValue[0]
	}
	return []ir.Type{t}, nil
}

func (rangeOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := need("Range", in, 3); err != nil {
		return nil, err
	}
	dt := in[0].DType
	for _, v := range in[:3] {
		if err := checkData("Range", v); err != nil {
			return nil, err
		}
		if v.Len() != 1 || v.DType != dt {
			return nil, badInput("Range: inputs must be scalars of one type, got %v %v", v.DType, v.Shape)
		}
	}
	var n int
	var err error
	switch {
	case dt.IsInt():
		n, err = rangeCountInt(in[0].Int(0), in[1].Int(0), in[2].Int(0))
	case dt.IsFloat():
		n, err = rangeCount(in[0].Float(0), in[1].Float(0), in[2].Float(0))
	default:
		return nil, badInput("Range: unsupported type %v", dt)
	}
	if err != nil {
		return nil, err
	}
	y, err := ops.NewOutput(env, dt, []int{n})
	if err != nil {
		return nil, err
	}
	switch dt {
	case tensor.Float32:
		// accumulate in float32 like the reference implementation
		s, d := float32(in[0].Float(0)), float32(in[2].Float(0))
		out := y.Float32s()
		for i := range out {
			out[i] = s + float32(i)*d
		}
	case tensor.Float64, tensor.Float16, tensor.BFloat16:
		s, d := in[0].Float(0), in[2].Float(0)
		for i := 0; i < n; i++ {
			y.SetFloat(i, s+float64(i)*d)
		}
	default:
		s, d := in[0].Int(0), in[2].Int(0)
		for i := 0; i < n; i++ {
			setInt(y, i, s+int64(i)*d)
		}
	}
	return env.One(y), nil
}

// eyeLikeOp is ONNX EyeLike: a 2-D tensor of the input's shape with ones on
// diagonal k.
type eyeLikeOp struct {
	dtype tensor.DType // Undefined: the input's
	k     int64
}

func prepareEyeLike(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseEyeLikeAttrs(n, opset)
	return &eyeLikeOp{k: a.K, dtype: a.DType}, err
}

// Def.Attrs of the ops of this file.
func eyeLikeAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseEyeLikeAttrs(n, opset) }
func oneHotAttrs(n *ir.Node, opset int64) (any, error)  { return ops.ParseOneHotAttrs(n, opset) }

func (k *eyeLikeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("EyeLike", in, 1); err != nil {
		return nil, err
	}
	t := in[0].Type
	t.Shape = t.Shape.Clone()
	if k.dtype != tensor.Undefined {
		t.DType = k.dtype
	}
	if t.Shape != nil && len(t.Shape) != 2 {
		return nil, badInput("EyeLike: input shape %v, want rank 2", t.Shape)
	}
	return []ir.Type{t}, nil
}

func (k *eyeLikeOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if x == nil || x.Rank() != 2 {
		return nil, badInput("EyeLike: want a rank-2 input")
	}
	dt := k.dtype
	if dt == tensor.Undefined {
		dt = x.DType
	}
	y, err := tensor.Make(dt, x.Shape)
	if err != nil {
		return nil, err
	}
	if dt == tensor.String {
		return nil, badInput("EyeLike: string output")
	}
	rows, cols := int64(x.Shape[0]), int64(x.Shape[1])
	for i := int64(0); i < rows; i++ {
		if j := i + k.k; j >= 0 && j < cols {
			y.SetFloat(int(i*cols+j), 1)
		}
	}
	return []*tensor.Tensor{y}, nil
}

// oneHotOp is ONNX OneHot: indices -> one-hot along axis with values
// [off, on]; negative indices count from depth.
type oneHotOp struct{ axis int64 }

func prepareOneHot(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseOneHotAttrs(n, opset)
	return &oneHotOp{axis: a.Axis}, err
}

func (k *oneHotOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("OneHot", in, 3); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[2].Type.DType}
	s := in[0].Type.Shape
	if s == nil {
		return []ir.Type{t}, nil
	}
	ax, err := normAxis("OneHot", k.axis, len(s)+1)
	if err != nil {
		return nil, err
	}
	depth := ir.U()
	if c := in[1].Const; c != nil && c.Len() == 1 && c.DType != tensor.String {
		if d := c.Float(0); d >= 1 && d < tensor.MaxElements {
			depth = ir.D(int64(d))
		}
	}
	t.Shape = append(append(append(ir.Shape{}, s[:ax]...), depth), s[ax:]...)
	return []ir.Type{t}, nil
}

func (k *oneHotOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := need("OneHot", in, 3); err != nil {
		return nil, err
	}
	ind, dep, vals := in[0], in[1], in[2]
	for _, v := range in[:3] {
		if err := checkData("OneHot", v); err != nil {
			return nil, err
		}
	}
	if dep.Len() != 1 || dep.DType == tensor.String || ind.DType == tensor.String {
		return nil, badInput("OneHot: depth must be one number, got %v %v", dep.DType, dep.Shape)
	}
	if vals.Len() != 2 {
		return nil, badInput("OneHot: values must hold 2 elements, got %v", vals.Shape)
	}
	df := dep.Float(0)
	if !(df >= 1) || df > tensor.MaxElements {
		return nil, badInput("OneHot: bad depth %g", df)
	}
	depth := int(df)
	ax, err := normAxis("OneHot", k.axis, ind.Rank()+1)
	if err != nil {
		return nil, err
	}
	shape := append(append(append([]int{}, ind.Shape[:ax]...), depth), ind.Shape[ax:]...)
	y, err := tensor.Make(vals.DType, shape)
	if err != nil {
		return nil, err
	}
	off, err := tensor.Make(vals.DType, []int{})
	if err != nil {
		return nil, err
	}
	copyElems(off, 0, vals, 0, 1)
	fillValue(y, 0, y.Len(), off)
	outer := prod(ind.Shape[:ax])
	inner := prod(ind.Shape[ax:])
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			v := ind.Float(o*inner + i)
			if ind.DType.IsInt() {
				v = float64(ind.Int(o*inner + i))
			}
			v = math.Trunc(v)
			if v < 0 {
				v += float64(depth)
			}
			if v < 0 || v >= float64(depth) || math.IsNaN(v) {
				continue
			}
			copyElems(y, (o*depth+int(v))*inner+i, vals, 1, 1)
		}
	}
	return []*tensor.Tensor{y}, nil
}

func init() {
	ops.Register(ops.Def{Type: "ConstantOfShape", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseConstantOfShapeAttrs(n, opset) }, Traits: ops.HasFloat16, Prepare: prepareConstantOfShape})
	ops.Register(ops.Def{Type: "Range", Prepare: func(*ir.Node, int64) (ops.Kernel, error) { return rangeOp{}, nil }})
	ops.Register(ops.Def{Type: "EyeLike", Attrs: eyeLikeAttrs, Traits: ops.HasFloat16 | ops.KeepFloat32, Prepare: prepareEyeLike})
	ops.Register(ops.Def{Type: "OneHot", Attrs: oneHotAttrs, Prepare: prepareOneHot})
}
