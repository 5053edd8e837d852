package shape

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// sliceOp is ONNX Slice: starts, ends, axes (and steps from opset 10) come
// from attributes before opset 10 and from inputs 1..4 after.
type sliceOp struct {
	attr                bool
	starts, ends, axes_ []int64
}

func prepareSlice(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseSliceAttrs(n, opset)
	return &sliceOp{attr: a.FromAttrs, starts: a.Starts, ends: a.Ends, axes_: a.Axes}, err
}

// sliceArgs are the parameters of one slice, before normalization.
type sliceArgs struct{ starts, ends, axes, steps []int64 }

// argsFrom returns the slice parameters from constant inputs; ok is false
// when some of them are not known.
func (k *sliceOp) argsFrom(in []*ir.Value) (a sliceArgs, ok bool) {
	if k.attr {
		return sliceArgs{k.starts, k.ends, k.axes_, nil}, true
	}
	get := func(i int) ([]int64, bool) {
		v := arg(in, i)
		if v == nil {
			return nil, true
		}
		return constInts(v)
	}
	var ok1, ok2, ok3, ok4 bool
	a.starts, ok1 = get(1)
	a.ends, ok2 = get(2)
	a.axes, ok3 = get(3)
	a.steps, ok4 = get(4)
	return a, ok1 && ok2 && ok3 && ok4 && a.starts != nil && a.ends != nil
}

// axisSlice is the normalized slice of one axis.
type axisSlice struct{ start, step, count int }

// resolve normalizes the parameters for a tensor of shape dims (a dim < 0 is
// unknown: that axis gets count -1 unless the slice keeps it whole).
// whole[i] reports an axis kept whole.
func (a sliceArgs) resolve(dims []int64) (sl []axisSlice, whole []bool, err error) {
	r := len(dims)
	n := len(a.starts)
	if len(a.ends) != n || (a.axes != nil && len(a.axes) != n) || (a.steps != nil && len(a.steps) != n) {
		return nil, nil, badInput("Slice: starts %v, ends %v, axes %v, steps %v differ in length", a.starts, a.ends, a.axes, a.steps)
	}
	sl = make([]axisSlice, r)
	whole = make([]bool, r)
	for i, d := range dims {
		sl[i] = axisSlice{0, 1, int(d)}
		whole[i] = true
	}
	seen := make([]bool, r)
	for i := 0; i < n; i++ {
		ax := int64(i)
		if a.axes != nil {
			ax = a.axes[i]
		}
		x, err := normAxis("Slice", ax, r)
		if err != nil {
			return nil, nil, err
		}
		if seen[x] {
			return nil, nil, badInput("Slice: axis %d is repeated", ax)
		}
		seen[x] = true
		step := int64(1)
		if a.steps != nil {
			step = a.steps[i]
		}
		if step == 0 {
			return nil, nil, badInput("Slice: step 0 on axis %d", ax)
		}
		start, end := a.starts[i], a.ends[i]
		dim := dims[x]
		if dim < 0 {
			// unknown size: only the identity slice is known
			if step == 1 && start == 0 && end >= math.MaxInt32 {
				continue
			}
			whole[x] = false
			sl[x] = axisSlice{0, int(step), -1}
			continue
		}
		if start < 0 {
			start += dim
		}
		if end < 0 {
			end += dim
		}
		if step == math.MinInt64 {
			step = -math.MaxInt64
		}
		var count int64
		if step > 0 {
			start = min(max(start, 0), dim)
			end = min(max(end, 0), dim)
			if end > start {
				count = (end-start-1)/step + 1
			}
		} else {
			start = min(max(start, 0), dim-1)
			end = min(max(end, -1), dim-1)
			if start > end {
				count = (start-end-1)/(-step) + 1
			}
		}
		if count == 0 {
			start = 0
		}
		if count <= 1 {
			step = 1
		}
		sl[x] = axisSlice{int(start), int(step), int(count)}
		whole[x] = count == dim && step == 1
	}
	return sl, whole, nil
}

func (k *sliceOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	n := 3
	if k.attr {
		n = 1
	}
	if err := need("Slice", in, n); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	s := in[0].Type.Shape
	if s == nil {
		return []ir.Type{t}, nil
	}
	a, ok := k.argsFrom(in)
	if !ok {
		// the rank is kept; axes not sliced might still be known, but which
		// axes are sliced is not
		t.Shape = unknownShape(len(s))
		return []ir.Type{t}, nil
	}
	dims := make([]int64, len(s))
	for i, d := range s {
		dims[i] = d.Val
		if !d.Known() {
			dims[i] = -1
		}
	}
	sl, whole, err := a.resolve(dims)
	if err != nil {
		return nil, err
	}
	t.Shape = make(ir.Shape, len(s))
	for i := range s {
		switch {
		case whole[i]:
			t.Shape[i] = s[i]
		case sl[i].count < 0:
			t.Shape[i] = ir.U()
		default:
			t.Shape[i] = ir.D(int64(sl[i].count))
		}
	}
	return []ir.Type{t}, nil
}

// ShapeValue slices a 1-D shape value with constant parameters.
func (k *sliceOp) ShapeValue(in []*ir.Value) []ir.Dim {
	v := arg(in, 0)
	if v == nil || v.ShapeValue == nil {
		return nil
	}
	a, ok := k.argsFrom(in)
	if !ok {
		return nil
	}
	sl, _, err := a.resolve([]int64{int64(len(v.ShapeValue))})
	if err != nil || len(sl) != 1 {
		return nil
	}
	out := make([]ir.Dim, sl[0].count)
	for i := range out {
		out[i] = v.ShapeValue[sl[0].start+i*sl[0].step]
	}
	return out
}

func (k *sliceOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Slice", x); err != nil {
		return nil, err
	}
	a := sliceArgs{k.starts, k.ends, k.axes_, nil}
	if !k.attr {
		var err error
		if a.starts, err = intVector("Slice", "starts", arg(in, 1)); err != nil {
			return nil, err
		}
		if a.ends, err = intVector("Slice", "ends", arg(in, 2)); err != nil {
			return nil, err
		}
		if arg(in, 3) != nil {
			if a.axes, err = intVector("Slice", "axes", in[3]); err != nil {
				return nil, err
			}
		}
		if arg(in, 4) != nil {
			if a.steps, err = intVector("Slice", "steps", in[4]); err != nil {
				return nil, err
			}
		}
	}
	dims := make([]int64, x.Rank())
	for i, d := range x.Shape {
		dims[i] = int64(d)
	}
	sl, _, err := a.resolve(dims)
	if err != nil {
		return nil, err
	}
	shape := make([]int, len(sl))
	st := strides(x.Shape)
	ss := make([]int, len(sl))
	off := 0
	for i, s := range sl {
		shape[i] = s.count
		ss[i] = st[i] * s.step
		off += s.start * st[i]
	}
	y, err := ops.NewOutput(env, x.DType, shape)
	if err != nil {
		return nil, err
	}
	copyND(y, 0, strides(shape), x, off, ss, shape)
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Type: "Slice", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseSliceAttrs(n, opset) }, Traits: ops.HasFloat16, Prepare: prepareSlice})
}
