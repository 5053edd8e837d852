package nn

import (
	"fmt"
	"math"

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

func parseEpilogue(a *ops.Attrs) epilogue {
	e := epilogue{act: a.OneOf("activation", a.String("activation", ActNone),
		ActNone, ActRelu, ActClip, ActSigmoid, ActSiLU, ActHardSwish, ActLeakyRelu, ActHardSigmoid, ActGelu, ActGeluTanh)}
	var def []float32
	switch e.act {
	case ActClip:
		def = []float32{float32(math.Inf(-1)), float32(math.Inf(1))}
	case ActLeakyRelu:
		def = []float32{0.01, 0}
	case ActHardSigmoid:
		def = []float32{0.2, 0.5}
	}
	p := a.Floats("activation_params", nil)
	if p == nil {
		p = def
	}
	if len(p) > 0 {
		e.p0 = p[0]
	}
	if len(p) > 1 {
		e.p1 = p[1]
	}
	if e.act == ActClip && !(e.p0 <= e.p1) {
		a.Fail("activation_params", "clip range [%g, %g] is empty", e.p0, e.p1)
	}
	return e
}

// apply runs the activation over y in place.
func (e epilogue) apply(y []float32) {
	switch e.act {
	case ActRelu:
		for i, v := range y {
			y[i] = max(v, 0)
		}
	case ActClip:
		for i, v := range y {
			y[i] = min(max(v, e.p0), e.p1)
		}
	case ActSigmoid:
		for i, v := range y {
			y[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
	case ActSiLU:
		for i, v := range y {
			y[i] = float32(float64(v) / (1 + math.Exp(-float64(v))))
		}
	case ActHardSwish:
		for i, v := range y {
			y[i] = v * max(0, min(1, v/6+0.5))
		}
	case ActLeakyRelu:
		for i, v := range y {
			if v < 0 {
				y[i] = e.p0 * v
			}
		}
	case ActHardSigmoid:
		for i, v := range y {
			y[i] = max(0, min(1, e.p0*v+e.p1))
		}
	case ActGelu:
		for i, v := range y {
			x := float64(v)
			y[i] = float32(0.5 * x * (1 + math.Erf(x/math.Sqrt2)))
		}
	case ActGeluTanh:
		const c = 0.7978845608028654 // sqrt(2/pi)
		for i, v := range y {
			x := float64(v)
			y[i] = float32(0.5 * x * (1 + math.Tanh(c*(x+0.044715*x*x*x))))
		}
	}
}

// geluOp is kiln::Gelu, ONNX Gelu (opset 20) for graphs of older opsets:
// attribute approximate "none" (the erf form) or "tanh". It computes
// float32 only.
type geluOp struct{ ep epilogue }

func prepareGelu(n *ir.Node, opset int64) (ops.Kernel, error) {
	a := ops.AttrsOf(n)
	k := &geluOp{ep: epilogue{act: ActGelu}}
	if a.OneOf("approximate", a.String("approximate", "none"), "none", "tanh") == "tanh" {
		k.ep.act = ActGeluTanh
	}
	if err := a.Err(); err != nil {
		return nil, err
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

func (k *geluOp) Run(_ *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("Gelu", in, 1); err != nil {
		return nil, err
	}
	if in[0].DType != tensor.Float32 {
		return nil, badInput("Gelu of %v, want float32", in[0].DType)
	}
	y := in[0].Clone()
	k.ep.apply(y.Float32s())
	return []*tensor.Tensor{y}, nil
}

// attentionOp is kiln::Attention: Y = Softmax(MatMul(Q, K)*scale + Mask)
// MatMul V, the softmax over the last axis, where K is already transposed
// ([..., d, s]) and the optional Mask (input 3) is added with numpy
// broadcasting (should it enlarge the scores, they are broadcast first, as
// the unfused graph would). Attribute scale defaults to 1. It computes
// float32 only.
type attentionOp struct{ scale float32 }

func prepareAttention(n *ir.Node, opset int64) (ops.Kernel, error) {
	a := ops.AttrsOf(n)
	k := &attentionOp{scale: a.Float("scale", 1)}
	if err := a.Err(); err != nil {
		return nil, err
	}
	return k, nil
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
	sc, err := matMulOp{}.Run(env, in[:2])
	if err != nil {
		return nil, err
	}
	scores := sc[0]
	shape := scores.Shape
	if len(shape) == 0 {
		return nil, badInput("Attention scores have no axes")
	}
	var mstr []int
	if mask != nil {
		b, err := ops.BroadcastShape(shape, mask.Shape)
		if err != nil {
			return nil, badInput("Attention mask of shape %v does not broadcast with the scores %v", mask.Shape, shape)
		}
		if tensor.ShapeString(b) != tensor.ShapeString(shape) {
			if scores, err = broadcastF32(scores, b); err != nil {
				return nil, err
			}
			shape = scores.Shape
		}
		mstr = ops.BroadcastStrides(mask.Shape, shape)
	}
	softmaxRows(scores.Float32s(), shape, k.scale, mask, mstr)
	return matMulOp{}.Run(env, []*tensor.Tensor{scores, in[2]})
}

// broadcastF32 returns float32 tensor t broadcast to shape out.
func broadcastF32(t *tensor.Tensor, out []int) (*tensor.Tensor, error) {
	y, err := makeOut(tensor.Float32, out)
	if err != nil {
		return nil, err
	}
	st := ops.BroadcastStrides(t.Shape, out)
	src, dst := t.Float32s(), y.Float32s()
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
	return y, nil
}

// softmaxRows replaces each row (last axis) of s by Softmax(row*scale +
// mask row), the mask read through broadcast strides mstr.
func softmaxRows(s []float32, shape []int, scale float32, mask *tensor.Tensor, mstr []int) {
	r := len(shape)
	n := shape[r-1]
	if n == 0 {
		return
	}
	var mv []float32
	if mask != nil {
		mv = mask.Float32s()
	}
	coord := make([]int, r-1)
	for row := 0; row*n < len(s); row++ {
		x := s[row*n : (row+1)*n]
		if mv != nil {
			base := 0
			for i, c := range coord {
				base += c * mstr[i]
			}
			for j := range x {
				x[j] = x[j]*scale + mv[base+j*mstr[r-1]]
			}
			for i := r - 2; i >= 0; i-- { // next row
				if coord[i]++; coord[i] < shape[i] {
					break
				}
				coord[i] = 0
			}
		} else {
			for j := range x {
				x[j] *= scale
			}
		}
		mx := x[0]
		for _, v := range x {
			mx = max(mx, v)
		}
		sum := 0.0
		for j, v := range x {
			e := math.Exp(float64(v - mx))
			x[j] = float32(e)
			sum += e
		}
		inv := 1 / sum
		for j := range x {
			x[j] = float32(float64(x[j]) * inv)
		}
	}
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
	ops.Register(ops.Def{Domain: FusedDomain, Type: "Gelu", Prepare: prepareGelu})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "LayerNormalization", Prepare: prepareLayerNormAlias})
	ops.Register(ops.Def{Domain: FusedDomain, Type: "Attention", Prepare: prepareAttention})
}
