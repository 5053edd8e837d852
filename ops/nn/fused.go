package nn

import (
	"fmt"
	"slices"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/internal/fastmath"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// FusedDomain is the operator domain of kiln's own fused operators, which
// the optimizer (package optimize) writes into graphs.
const FusedDomain = "kiln"

// Activations a fused operator can apply to its output (attribute
// "activation"); "" applies none. Parameters come from the floats
// attribute "activation_params":
//
//	Relu       max(x, 0)
//	Clip       min(max(x, p0), p1)       (p0, p1 default to -Inf, +Inf)
//	Sigmoid    1/(1+exp(-x))
//	SiLU       x*Sigmoid(x)
//	HardSwish  x*max(0, min(1, x/6+0.5))
//	LeakyRelu  x < 0 ? p0*x : x          (p0 defaults to 0.01)
//	HardSigmoid max(0, min(1, p0*x+p1))  (p0, p1 default to 0.2, 0.5)
//	Gelu       0.5*x*(1+erf(x/sqrt(2)))
//	GeluTanh   0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3)))
const (
	ActNone        = ""
	ActRelu        = "Relu"
	ActClip        = "Clip"
	ActSigmoid     = "Sigmoid"
	ActSiLU        = "SiLU"
	ActHardSwish   = "HardSwish"
	ActLeakyRelu   = "LeakyRelu"
	ActHardSigmoid = "HardSigmoid"
	ActGelu        = "Gelu"
	ActGeluTanh    = "GeluTanh"
)

// epilogue is a parsed activation.
type epilogue struct {
	act    string
	p0, p1 float32
}

// epilogueOf is the kernel's form of the typed epilogue (as the CUDA
// kernels read it).
func epilogueOf(e ops.EpilogueAttrs) epilogue {
	return epilogue{act: e.Activation, p0: e.P0, p1: e.P1}
}

// Grains of the epilogue's parallel loops: the number of elements one
// goroutine takes at least, smaller for the activations that evaluate an
// exponential per element than for the ones that cost a compare or two.
const (
	cheapGrain = ops.ElemGrain
	expGrain   = 1 << 12
)

// grain returns the parallel grain of the activation.
func (e epilogue) grain() int {
	switch e.act {
	case ActSigmoid, ActSiLU, ActGelu, ActGeluTanh:
		return expGrain
	}
	return cheapGrain
}

// apply runs the activation over y in place, split over cpu.ParallelFor.
func (e epilogue) apply(y []float32) {
	if e.act == ActNone {
		return
	}
	cpu.ParallelFor(len(y), e.grain(), func(lo, hi int) { e.applySerial(y[lo:hi]) })
}

// applyAdd adds z to y (of the same length) and runs the activation, in one
// pass split over cpu.ParallelFor.
//
// A pass one goroutine takes (one chunk, or one thread) runs here without
// the closure, which escapes to cpu.ParallelFor's workers (a heap
// allocation per call); the closure captures only variables never
// reassigned (captured by value: one allocation, not one per variable).
func (e epilogue) applyAdd(y, z []float32) {
	zs := z[:len(y)]
	grain := min(e.grain(), cheapGrain/2)
	if len(y) <= grain || cpu.Threads() == 1 {
		fastmath.ScaleAdd(y, y, 1, zs) // y*1 + z rounds once, as y + z does
		e.applySerial(y)
		return
	}
	cpu.ParallelFor(len(y), grain, func(lo, hi int) {
		yc := y[lo:hi]
		fastmath.ScaleAdd(yc, yc, 1, zs[lo:hi])
		e.applySerial(yc)
	})
}

// applyBias adds bias (of length n) to every row of y (rows of length n)
// and runs the activation, in one pass split over rows with
// cpu.ParallelFor.
func (e epilogue) applyBias(y, bias []float32, n int) {
	if n == 0 {
		return
	}
	bs := bias[:n]
	rows := len(y) / n
	grain := max(1, min(e.grain(), cheapGrain/2)/n)
	if rows <= grain || cpu.Threads() == 1 { // as applyAdd: no closure
		for r := range rows {
			row := y[r*n : (r+1)*n]
			fastmath.ScaleAdd(row, row, 1, bs)
			e.applySerial(row)
		}
		return
	}
	cpu.ParallelFor(rows, grain, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := y[r*n : (r+1)*n]
			fastmath.ScaleAdd(row, row, 1, bs)
			e.applySerial(row)
		}
	})
}

// applySerial runs the activation over y in place on the caller's
// goroutine: ops.EpilogueAttrs.ApplySerial, the activations' one
// definition (the CPU registry's FusedMatMul runs it too).
func (e epilogue) applySerial(y []float32) {
	ops.EpilogueAttrs{Activation: e.act, P0: e.p0, P1: e.p1}.ApplySerial(y)
}

// geluOp is kiln::Gelu, ONNX Gelu (opset 20) for graphs of older opsets:
// attribute approximate "none" (the erf form) or "tanh". It computes
// float32 only.
type geluOp struct{ ep epilogue }

func prepareGelu(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseActivationAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	k := &geluOp{ep: epilogue{act: ActGelu}}
	if a.Tanh {
		k.ep.act = ActGeluTanh
	}
	return k, nil
}

func (k *geluOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("Gelu", in, 1); err != nil {
		return nil, err
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && dt != tensor.Float32 {
		return nil, badInput("Gelu of %v, want float32", dt)
	}
	return []ir.Type{in[0].Type}, nil
}

func (k *geluOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("Gelu", in, 1); err != nil {
		return nil, err
	}
	if in[0].DType != tensor.Float32 {
		return nil, badInput("Gelu of %v, want float32", in[0].DType)
	}
	y, err := newOut(env, tensor.Float32, in[0].Shape)
	if err != nil {
		return nil, err
	}
	src, dst := in[0].Float32s(), y.Float32s()
	f := fastmath.Gelu
	if k.ep.act == ActGeluTanh {
		f = fastmath.GeluTanh
	}
	cpu.ParallelFor(len(dst), expGrain, func(lo, hi int) { f(dst[lo:hi], src[lo:hi]) })
	return []*tensor.Tensor{y}, nil
}

// attentionOp is kiln::Attention: Y = Softmax(MatMul(Q, K)*scale + Mask)
// MatMul V, the softmax over the last axis, where K is already transposed
// ([..., d, s]) and the optional Mask (input 3) is added with numpy
// broadcasting (should it enlarge the scores, they are broadcast first, as
// the unfused graph would). Attribute scale defaults to 1. It computes
// float32 only. Its Run computes all scores in pooled scratch memory, then
// the softmax rows in parallel with the float32 exponential of
// internal/fastmath, then the product with V; the CPU registry
// (device/cpu/kernels) runs plain [B, H, ., .] heads per head and block of
// query rows (the scores of one block at a time).
type attentionOp struct{ scale float32 }

func attentionAttrs(n *ir.Node, opset int64) (any, error) {
	return ops.ParseFusedAttentionAttrs(n, opset)
}

func prepareAttention(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseFusedAttentionAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &attentionOp{scale: a.Scale}, nil
}

func (k *attentionOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("Attention", in, 3); err != nil {
		return nil, err
	}
	for _, v := range in {
		if v != nil && v.Type.DType != tensor.Undefined && v.Type.DType != tensor.Float32 {
			return nil, badInput("Attention of %v, want float32", v.Type.DType)
		}
	}
	s, err := inferMatMul(in[0].Type.Shape, in[1].Type.Shape)
	if err != nil {
		return nil, err
	}
	if m := value(in, 3); m != nil {
		if s, err = ops.InferBroadcast(&ir.Value{Type: ir.Type{DType: tensor.Float32, Shape: s}}, m); err != nil {
			return nil, badInput("Attention mask: %v", err)
		}
	}
	o, err := inferMatMul(s, in[2].Type.Shape)
	if err != nil {
		return nil, err
	}
	return []ir.Type{{DType: tensor.Float32, Shape: o}}, nil
}

func (k *attentionOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("Attention", in, 3); err != nil {
		return nil, err
	}
	mask := input(in, 3)
	for _, t := range []*tensor.Tensor{in[0], in[1], in[2], mask} {
		if t != nil && t.DType != tensor.Float32 {
			return nil, badInput("Attention of %v, want float32", t.DType)
		}
	}
	q, kt, v := in[0], in[1], in[2]
	p1, err := PlanMatMul("Attention", q.Shape, kt.Shape)
	if err != nil {
		return nil, err
	}
	shape := p1.Out
	if len(shape) == 0 {
		return nil, badInput("Attention scores have no axes")
	}
	var mstr []int
	if mask != nil {
		b, err := ops.BroadcastShape(shape, mask.Shape)
		if err != nil {
			return nil, badInput("Attention mask of shape %v does not broadcast with the scores %v", mask.Shape, shape)
		}
		shape = b
		mstr = ops.BroadcastStrides(mask.Shape, shape)
	}
	p2, err := PlanMatMul("Attention", shape, v.Shape)
	if err != nil {
		return nil, err
	}
	// The output first: it takes the node's planned arena slot; the scores
	// are scratch.
	y, err := newOut(env, tensor.Float32, p2.Out)
	if err != nil {
		return nil, err
	}
	n1 := tensor.NumElements(p1.Out)
	sc, h1 := scratch[float32](n1)
	defer putScratch(h1)
	RunMatMul(p1, q.Float32s(), kt.Float32s(), sc)
	if !slices.Equal(shape, p1.Out) { // the mask enlarges the scores
		n := tensor.NumElements(shape)
		big, h2 := scratch[float32](n)
		defer putScratch(h2)
		broadcastInto(big, shape, sc, ops.BroadcastStrides(p1.Out, shape))
		sc = big
	}
	softmaxRows(sc, shape, k.scale, mask, mstr)
	RunMatMul(p2, sc, v.Float32s(), y.Float32s())
	return []*tensor.Tensor{y}, nil
}

// broadcastInto writes src, read through broadcast strides st, into dst of
// shape out (every element).
func broadcastInto(dst []float32, out []int, src []float32, st []int) {
	coord := make([]int, len(out))
	for i := range dst {
		off := 0
		for k, c := range coord {
			off += c * st[k]
		}
		dst[i] = src[off]
		for k := len(out) - 1; k >= 0; k-- {
			if coord[k]++; coord[k] < out[k] {
				break
			}
			coord[k] = 0
		}
	}
}

// softmaxRows replaces each row (last axis) of s by Softmax(row*scale +
// mask row), the mask read through broadcast strides mstr: rows split over
// cpu.ParallelFor, the exponentials in float32 (internal/fastmath).
func softmaxRows(s []float32, shape []int, scale float32, mask *tensor.Tensor, mstr []int) {
	r := len(shape)
	n := shape[r-1]
	if n == 0 || len(s) == 0 {
		return
	}
	var mv []float32
	if mask != nil {
		mv = mask.Float32s()
	}
	rows := len(s) / n
	cpu.ParallelFor(rows, max(1, expGrain/n), func(lo, hi int) {
		// The coordinates of row lo over the leading axes.
		coord := make([]int, r-1)
		for i, rem := r-2, lo; i >= 0; i-- {
			coord[i] = rem % shape[i]
			rem /= shape[i]
		}
		for row := lo; row < hi; row++ {
			x := s[row*n : (row+1)*n]
			if mv != nil {
				base := 0
				for i, c := range coord {
					base += c * mstr[i]
				}
				if ms := mstr[r-1]; ms == 1 {
					fastmath.ScaleAdd(x, x, scale, mv[base:base+n])
				} else {
					for j := range x {
						x[j] = x[j]*scale + mv[base+j*ms]
					}
				}
				for i := r - 2; i >= 0; i-- { // next row
					if coord[i]++; coord[i] < shape[i] {
						break
					}
					coord[i] = 0
				}
				sm := 1 / fastmath.ExpShifted(x, x, 1, fastmath.Max(x))
				fastmath.ScaleAdd(x, x, float32(sm), nil)
				continue
			}
			// No mask: the scale goes into the exponentials (max(x*scale)
			// is max(x)*scale for a scale of at least 0).
			sc := scale
			if !(scale >= 0) {
				fastmath.ScaleAdd(x, x, scale, nil)
				sc = 1
			}
			sm := 1 / fastmath.ExpShifted(x, x, sc, fastmath.Max(x)*sc)
			fastmath.ScaleAdd(x, x, float32(sm), nil)
		}
	})
}

// prepareLayerNormAlias prepares kiln::LayerNormalization, ONNX
// LayerNormalization (opset 17) for graphs of older opsets, with the kernel
// of the default domain's definition (ops/norm).
func prepareLayerNormAlias(n *ir.Node, opset int64) (ops.Kernel, error) {
	d, ok := ops.Lookup("", "LayerNormalization")
	if !ok {
		return nil, fmt.Errorf("%w: kiln::LayerNormalization needs LayerNormalization (package ops/norm)", ops.ErrUnsupportedOp)
	}
	return d.Prepare(n, max(opset, 17))
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "Gelu", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseActivationAttrs(n, opset) }, Prepare: prepareGelu})
	// kiln's LayerNormalization is opset 17's (its Prepare is the default
	// domain's, which reads LayerNormAttrs)
	ops.Register(ops.Def{Domain: FusedDomain, Type: "LayerNormalization", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseLayerNormAttrs(n, max(opset, 17)) }, Prepare: prepareLayerNormAlias})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "Attention", Attrs: attentionAttrs, Prepare: prepareAttention})
}
