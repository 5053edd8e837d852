package nn

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
	"slices"
	"sync/atomic"
)

// convOp is ONNX Conv: a grouped, strided, dilated N-D convolution of X
// [N,C,D1..Dr] with W [M,C/group,k1..kr] plus an optional bias [M]. Its
// Run is the reference, convGeneric (im2col + GEMM) in the input's float
// type (float16 and bfloat16 widened to float32); the CPU registry's
// cpu.Conv (device/cpu/kernels) runs cpu.Conv2D on the 2-D ones wherever
// the engine prepares the node.
type convOp struct {
	win   window
	group int
}

// convSetupCache holds the geometry of the last shapes a convolution ran.
type convSetupCache struct {
	p atomic.Pointer[convSetupEntry]
}

// convSetupEntry is convSetup's result for the input shapes x, w and b
// (b nil: no bias); s and out are read only.
type convSetupEntry struct {
	x, w, b []int
	hasB    bool
	s       *convShape
	out     []int
}

// get is convSetup, reusing the geometry of the last run when the
// shapes are the same (a server runs one shape after another): the
// returned shape and output shape are shared and must not be modified.
func (c *convSetupCache) get(op string, win *window, group int, x, w, b *tensor.Tensor) (*convShape, []int, error) {
	if e := c.p.Load(); e != nil && slices.Equal(e.x, x.Shape) && slices.Equal(e.w, w.Shape) &&
		e.hasB == (b != nil) && (b == nil || slices.Equal(e.b, b.Shape)) {
		return e.s, e.out, nil
	}
	s, out, err := convSetup(op, win, group, x, w, b)
	if err != nil {
		return nil, nil, err
	}
	// the geometry's input and kernel sizes alias the tensors' shapes:
	// the entry keeps copies
	s.g.in, s.g.kernel = slices.Clone(s.g.in), slices.Clone(s.g.kernel)
	e := &convSetupEntry{x: slices.Clone(x.Shape), w: slices.Clone(w.Shape), hasB: b != nil, s: s, out: out}
	if b != nil {
		e.b = slices.Clone(b.Shape)
	}
	c.p.Store(e)
	return s, out, nil
}

func prepareConv(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseConvAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &convOp{win: windowOf(&a.WindowAttrs), group: int(a.Group)}, nil
}

func convAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseConvAttrs(n, opset) }

// windowOf is the CPU kernels' form of the typed window attributes.
func windowOf(a *ops.WindowAttrs) window {
	w := window{autoPad: padNotSet, ceil: a.CeilMode}
	switch a.AutoPad {
	case ops.AutoPadSameUpper:
		w.autoPad = padSameUpper
	case ops.AutoPadSameLower:
		w.autoPad = padSameLower
	case ops.AutoPadValid:
		w.autoPad = padValid
	}
	list := func(v []int64) []int {
		if v == nil {
			return nil
		}
		return ints64(v)
	}
	w.kernel, w.strides, w.dilations, w.pads = list(a.KernelShape), list(a.Strides), list(a.Dilations), list(a.Pads)
	return w
}

// inferConv infers the output shape [N, M, out...] of a convolution from
// the shapes of X and W.
func inferConv(win *window, xs, ws ir.Shape, group int) (ir.Shape, error) {
	rank := -1
	switch {
	case xs != nil:
		rank = len(xs)
	case ws != nil:
		rank = len(ws)
	}
	if rank < 0 {
		return nil, nil
	}
	if rank < 3 {
		return nil, badInput("convolution input has rank %d, want at least 3", rank)
	}
	if ws != nil && len(ws) != rank {
		return nil, badInput("convolution weights have rank %d, input rank %d", len(ws), rank)
	}
	if xs != nil && ws != nil && xs[1].Known() && ws[1].Known() && xs[1].Val != ws[1].Val*int64(group) {
		return nil, badInput("input has %d channels, weights want %d x group %d", xs[1].Val, ws[1].Val, group)
	}
	out := make(ir.Shape, rank)
	out[0], out[1] = ir.U(), ir.U()
	if xs != nil {
		out[0] = xs[0]
	}
	if ws != nil {
		out[1] = ws[0]
	}
	var kern []int
	if ws != nil {
		kern = make([]int, rank-2)
		for i := range kern {
			kern[i] = -1
			if ws[i+2].Known() {
				kern[i] = int(ws[i+2].Val)
			}
		}
	}
	sp := make(ir.Shape, rank-2)
	for i := range sp {
		sp[i] = ir.U()
	}
	if xs != nil {
		var err error
		if sp, err = win.inferDims(xs[2:], kern); err != nil {
			return nil, err
		}
	}
	copy(out[2:], sp)
	return out, nil
}

func (k *convOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("Conv", in, 2); err != nil {
		return nil, err
	}
	s, err := inferConv(&k.win, in[0].Type.Shape, in[1].Type.Shape, k.group)
	if err != nil {
		return nil, err
	}
	return []ir.Type{{DType: in[0].Type.DType, Shape: s}}, nil
}

// convSetup checks the shapes of a convolution's X, W and optional bias
// and resolves its geometry.
func convSetup(op string, win *window, group int, x, w, b *tensor.Tensor) (*convShape, []int, error) {
	if x.Rank() < 3 {
		return nil, nil, badInput("%s input has shape %v, want [N,C,spatial...]", op, x.Shape)
	}
	if w.Rank() != x.Rank() {
		return nil, nil, badInput("%s weights have shape %v for input %v", op, w.Shape, x.Shape)
	}
	s := &convShape{n: x.Shape[0], c: x.Shape[1], m: w.Shape[0], group: group}
	if s.c != w.Shape[1]*group {
		return nil, nil, badInput("%s input has %d channels, weights %v with group %d want %d", op, s.c, w.Shape, group, w.Shape[1]*group)
	}
	if s.m%group != 0 {
		return nil, nil, badInput("%s has %d output channels, not a multiple of group %d", op, s.m, group)
	}
	if win.kernel != nil {
		for i, kd := range win.kernel {
			if i+2 >= w.Rank() || w.Shape[i+2] != kd {
				return nil, nil, badInput("%s kernel_shape %v does not match weights %v", op, win.kernel, w.Shape)
			}
		}
	}
	if err := win.resolveInto(&s.geom, x.Shape[2:], w.Shape[2:]); err != nil {
		return nil, nil, err
	}
	g := &s.geom
	s.g = g
	if b != nil && (b.Rank() != 1 || b.Shape[0] != s.m) {
		return nil, nil, badInput("%s bias has shape %v, want [%d]", op, b.Shape, s.m)
	}
	var out []int
	if r := len(g.out); r <= geomRank {
		out = s.out[: 0 : 2+r]
	} else {
		out = make([]int, 0, 2+r)
	}
	out = append(append(out, s.n, s.m), g.out...)
	if _, err := checkedNumel(out); err != nil {
		return nil, nil, err
	}
	return s, out, nil
}

func (k *convOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("Conv", in, 2); err != nil {
		return nil, err
	}
	x, w, b := in[0], in[1], input(in, 2)
	if w.DType != x.DType || (b != nil && b.DType != x.DType) {
		return nil, badInput("Conv of %v with weights %v", x.DType, w.DType)
	}
	s, outShape, err := convSetup("Conv", &k.win, k.group, x, w, b)
	if err != nil {
		return nil, err
	}
	y, err := newOut(env, x.DType, outShape)
	if err != nil {
		return nil, err
	}
	switch x.DType {
	case tensor.Float32:
		var bias []float32
		if b != nil {
			bias = b.Float32s()
		}
		convGeneric(s, x.Float32s(), w.Float32s(), bias, y.Float32s())
	case tensor.Float64:
		var bias []float64
		if b != nil {
			bias = b.Float64s()
		}
		convGeneric(s, x.Float64s(), w.Float64s(), bias, y.Float64s())
	case tensor.Float16, tensor.BFloat16:
		var bias []float32
		if b != nil {
			bias = toFloat32(b)
		}
		yf := make([]float32, y.Len())
		convGeneric(s, toFloat32(x), toFloat32(w), bias, yf)
		if y, err = fromFloat32(x.DType, slices.Clone(outShape), yf); err != nil {
			return nil, err
		}
	default:
		return nil, badInput("Conv of %v, want a float type", x.DType)
	}
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Type: "Conv", Attrs: convAttrs, Prepare: prepareConv})
}
