package shape

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// reshapeOp is ONNX Reshape: a 0 copies the input's dimension (unless
// allowzero), a -1 is inferred. The output shares the input's storage.
type reshapeOp struct {
	allowZero bool
	shape     []int64 // the shape attribute of Reshape-1..4
	attr      bool
}

func prepareReshape(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseReshapeAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &reshapeOp{allowZero: a.AllowZero, shape: a.Shape, attr: a.FromAttrs}, nil
}

func (k *reshapeOp) target(in []*ir.Value) ([]ir.Dim, bool) {
	if k.attr {
		d := make([]ir.Dim, len(k.shape))
		for i, v := range k.shape {
			d[i] = ir.U()
			if v >= 0 {
				d[i] = ir.D(v)
			}
		}
		return d, true
	}
	return dimsOf(arg(in, 1))
}

func (k *reshapeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	n := 2
	if k.attr {
		n = 1
	}
	if err := need("Reshape", in, n); err != nil {
		return nil, err
	}
	t := ir.Type{DType: in[0].Type.DType}
	if target, ok := k.target(in); ok {
		t.Shape = inferReshape(in[0].Type.Shape, target, k.allowZero)
	}
	return []ir.Type{t}, nil
}

// inferReshape computes Reshape's output shape from the input shape and the
// target's elements as dims, where an unknown element may be -1, 0 or
// anything else: when exactly one output dim is not determined by the
// target, it is the input's size divided by the others'.
func inferReshape(in ir.Shape, target []ir.Dim, allowZero bool) ir.Shape {
	out := make(ir.Shape, len(target))
	open, twoOpen := -1, false
	for i, d := range target {
		switch {
		case d.Known() && d.Val == 0 && !allowZero:
			if in != nil && i < len(in) {
				out[i] = in[i]
			} else {
				out[i] = ir.U()
			}
		case d.Known() || d.Symbolic():
			out[i] = d
		default:
			out[i] = ir.U()
			if open >= 0 {
				twoOpen = true // leave them unknown
			}
			open = i
		}
	}
	if open >= 0 && !twoOpen && in != nil {
		others := append(append([]ir.Dim{}, out[:open]...), out[open+1:]...)
		out[open] = divDims(in, others)
	}
	return out
}

// ShapeValue passes a shape value through: reshaping keeps the elements.
func (k *reshapeOp) ShapeValue(in []*ir.Value) []ir.Dim { return passShapeValue(in) }

func passShapeValue(in []*ir.Value) []ir.Dim {
	if v := arg(in, 0); v != nil {
		return v.ShapeValue
	}
	return nil
}

func (k *reshapeOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Reshape", x); err != nil {
		return nil, err
	}
	target := k.shape
	if !k.attr {
		var err error
		if target, err = intVector("Reshape", "shape", arg(in, 1)); err != nil {
			return nil, err
		}
	}
	shape, err := resolveReshape(x.Shape, target, k.allowZero)
	if err != nil {
		return nil, err
	}
	y, err := x.Reshape(shape)
	if err != nil {
		return nil, badInput("Reshape: %v", err)
	}
	return env.One(y), nil
}

// resolveReshape computes the concrete target shape of Reshape.
func resolveReshape(in []int, target []int64, allowZero bool) ([]int, error) {
	out := make([]int, len(target))
	neg := -1
	known := 1
	for i, v := range target {
		switch {
		case v == 0 && !allowZero:
			if i >= len(in) {
				return nil, badInput("Reshape: shape %v copies dimension %d of a rank-%d input", target, i, len(in))
			}
			out[i] = in[i]
		case v == -1:
			if neg >= 0 {
				return nil, badInput("Reshape: shape %v has more than one -1", target)
			}
			neg = i
			continue
		case v < 0 || v > tensor.MaxElements:
			return nil, badInput("Reshape: bad dimension %d in shape %v", v, target)
		default:
			out[i] = int(v)
		}
		if out[i] != 0 && known > tensor.MaxElements/out[i] {
			return nil, badInput("Reshape: shape %v is too large", target)
		}
		known *= out[i]
	}
	total := prod(in)
	if neg >= 0 {
		switch {
		case known == 0 || total%known != 0:
			return nil, badInput("Reshape: cannot reshape %v to %v", in, target)
		default:
			out[neg] = total / known
		}
	} else if known != total {
		return nil, badInput("Reshape: cannot reshape %v (%d elements) to %v", in, total, out)
	}
	return out, nil
}

// flattenOp is ONNX Flatten: [d0..dn] -> [d0*..*d(axis-1), d(axis)*..*dn].
type flattenOp struct{ axis int64 }

func prepareFlatten(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseFlattenAttrs(n, opset)
	return &flattenOp{axis: a.Axis}, err
}

func (k *flattenOp) norm(rank int) (int, error) {
	ax := k.axis
	if ax < -int64(rank) || ax > int64(rank) {
		return 0, badInput("Flatten: axis %d is out of range for rank %d", ax, rank)
	}
	if ax < 0 {
		ax += int64(rank)
	}
	return int(ax), nil
}

func (k *flattenOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need("Flatten", in, 1); err != nil {
		return nil, err
	}
	s := in[0].Type.Shape
	t := ir.Type{DType: in[0].Type.DType, Shape: unknownShape(2)}
	if s != nil {
		ax, err := k.norm(len(s))
		if err != nil {
			return nil, err
		}
		t.Shape = ir.Shape{ir.MulDims(s[:ax]...), ir.MulDims(s[ax:]...)}
	}
	return []ir.Type{t}, nil
}

func (k *flattenOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData("Flatten", x); err != nil {
		return nil, err
	}
	ax, err := k.norm(x.Rank())
	if err != nil {
		return nil, err
	}
	y, err := x.Reshape([]int{prod(x.Shape[:ax]), prod(x.Shape[ax:])})
	if err != nil {
		return nil, badInput("Flatten: %v", err)
	}
	return env.One(y), nil
}

// ShapeValue passes a shape value through.
func (k *flattenOp) ShapeValue(in []*ir.Value) []ir.Dim { return passShapeValue(in) }

// squeezeOp is ONNX Squeeze (unsqueeze false) and Unsqueeze (true). The axes
// come from the attribute before opset 13 and from input 1 after.
type squeezeOp struct {
	unsqueeze bool
	axes      []int64
	attr      bool // axes is the attribute's value (or absent: nil)
}

// squeezeAttrs is the Def.Attrs of Squeeze and Unsqueeze.
func squeezeAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseSqueezeAttrs(n, opset) }

func prepareSqueeze(unsqueeze bool) func(n *ir.Node, opset int64) (ops.Kernel, error) {
	return func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseSqueezeAttrs(n, opset)
		return &squeezeOp{unsqueeze: unsqueeze, attr: a.FromAttrs, axes: a.Axes}, err
	}
}

func (k *squeezeOp) name() string {
	if k.unsqueeze {
		return "Unsqueeze"
	}
	return "Squeeze"
}

// axesOf returns the axes; known is false when they are given by a
// non-constant input; nil axes (Squeeze) means every unit dimension.
func (k *squeezeOp) axesOf(in []*ir.Value) (axes []int64, known bool) {
	if k.attr {
		return k.axes, true
	}
	v := arg(in, 1)
	if v == nil {
		return nil, true
	}
	axes, known = constInts(v)
	if len(axes) == 0 {
		axes = nil // like onnxruntime: empty axes squeeze every unit dimension
	}
	return axes, known
}

func (k *squeezeOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := need(k.name(), in, 1); err != nil {
		return nil, err
	}
	if k.unsqueeze && !k.attr {
		if err := need(k.name(), in, 2); err != nil {
			return nil, err
		}
	}
	t := ir.Type{DType: in[0].Type.DType}
	s := in[0].Type.Shape
	axes, known := k.axesOf(in)
	if !known {
		if k.unsqueeze && s != nil {
			if d, ok := dimsOf(in[1]); ok {
				t.Shape = unknownShape(len(s) + len(d))
			}
		}
		return []ir.Type{t}, nil
	}
	if s == nil {
		return []ir.Type{t}, nil
	}
	if k.unsqueeze {
		out, err := unsqueezeShape(len(s), axes)
		if err != nil {
			return nil, err
		}
		shape := make(ir.Shape, len(out))
		j := 0
		for i, keep := range out {
			if keep {
				shape[i] = s[j]
				j++
			} else {
				shape[i] = ir.D(1)
			}
		}
		t.Shape = shape
		return []ir.Type{t}, nil
	}
	drop := make([]bool, len(s))
	if axes == nil {
		for i, d := range s {
			if !d.Known() {
				return []ir.Type{t}, nil // might be 1: the rank is unknown
			}
			drop[i] = d.Val == 1
		}
	} else {
		ax, err := normAxes("Squeeze", axes, len(s))
		if err != nil {
			return nil, err
		}
		for _, a := range ax {
			if s[a].Known() && s[a].Val != 1 {
				return nil, badInput("Squeeze: dimension %d of %v is not 1", a, s)
			}
			drop[a] = true
		}
	}
	shape := ir.Shape{}
	for i, d := range s {
		if !drop[i] {
			shape = append(shape, d)
		}
	}
	t.Shape = shape
	return []ir.Type{t}, nil
}

// unsqueezeShape returns, for each output axis, whether it is an input axis
// (true) or an inserted one.
func unsqueezeShape(rank int, axes []int64) ([]bool, error) {
	r := rank + len(axes)
	ax, err := normAxes("Unsqueeze", axes, r)
	if err != nil {
		return nil, err
	}
	keep := make([]bool, r)
	for i := range keep {
		keep[i] = true
	}
	for _, a := range ax {
		keep[a] = false
	}
	return keep, nil
}

func (k *squeezeOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	x := arg(in, 0)
	if err := checkData(k.name(), x); err != nil {
		return nil, err
	}
	axes := k.axes
	if !k.attr && arg(in, 1) != nil {
		if a := in[1]; a.DType == tensor.Int64 && a.Rank() <= 1 && len(a.Data) >= 8*a.Len() {
			axes = a.Int64s()[:a.Len()] // read only: no copy
		} else {
			var err error
			if axes, err = intVector(k.name(), "axes", in[1]); err != nil {
				return nil, err
			}
		}
		if len(axes) == 0 {
			axes = nil
		}
	} else if !k.attr && k.unsqueeze {
		return nil, badInput("Unsqueeze: axes input is missing")
	}
	var sb [8]int // the output shape, on the stack (Reshape copies it)
	shape := sb[:0]
	if k.unsqueeze {
		r := x.Rank() + len(axes)
		var kb [8]bool
		var keep []bool
		if r <= len(kb) {
			// unsqueezeShape without allocating
			keep = kb[:r]
			for i := range keep {
				keep[i] = true
			}
			for _, a := range axes {
				ax, err := normAxis("Unsqueeze", a, r)
				if err != nil {
					return nil, err
				}
				if !keep[ax] {
					return nil, badInput("%s: axis %d is repeated", "Unsqueeze", a)
				}
				keep[ax] = false
			}
		} else {
			var err error
			if keep, err = unsqueezeShape(x.Rank(), axes); err != nil {
				return nil, err
			}
		}
		j := 0
		for _, kp := range keep {
			if kp {
				shape = append(shape, x.Shape[j])
				j++
			} else {
				shape = append(shape, 1)
			}
		}
	} else {
		var db [8]bool
		var drop []bool
		if x.Rank() <= len(db) {
			drop = db[:x.Rank()]
		} else {
			drop = make([]bool, x.Rank())
		}
		if axes == nil {
			for i, d := range x.Shape {
				drop[i] = d == 1
			}
		} else {
			for _, a := range axes {
				ax, err := normAxis("Squeeze", a, x.Rank())
				if err != nil {
					return nil, err
				}
				if drop[ax] {
					return nil, badInput("%s: axis %d is repeated", "Squeeze", a)
				}
				if x.Shape[ax] != 1 {
					return nil, badInput("Squeeze: dimension %d of %v is not 1", ax, x.Shape)
				}
				drop[ax] = true
			}
		}
		for i, d := range x.Shape {
			if !drop[i] {
				shape = append(shape, d)
			}
		}
	}
	y, err := x.Reshape(shape)
	if err != nil {
		return nil, badInput("%s: %v", k.name(), err)
	}
	return env.One(y), nil
}

// ShapeValue passes a shape value through.
func (k *squeezeOp) ShapeValue(in []*ir.Value) []ir.Dim { return passShapeValue(in) }

func init() {
	ops.Register(ops.Def{Type: "Reshape", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseReshapeAttrs(n, opset) }, Prepare: prepareReshape, Traits: ops.ViewOfInput0 | ops.HasFloat16})
	ops.Register(ops.Def{Type: "Flatten", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseFlattenAttrs(n, opset) }, Prepare: prepareFlatten, Traits: ops.ViewOfInput0 | ops.HasFloat16})
	ops.Register(ops.Def{Type: "Squeeze", Attrs: squeezeAttrs, Prepare: prepareSqueeze(false), Traits: ops.ViewOfInput0 | ops.HasFloat16})
	ops.Register(ops.Def{Type: "Unsqueeze", Attrs: squeezeAttrs, Prepare: prepareSqueeze(true), Traits: ops.ViewOfInput0 | ops.HasFloat16})
}
