package kernels

import (
	"fmt"
	"slices"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/tensor"
)

// The convolutions: ONNX Conv (cpu.Conv2D on 2-D shapes), kiln::FusedConv
// (fusedconv.go: tactical, the epilogue in the kernels) and
// kiln::BlockedConv (blockedconv.go). ops/nn keeps their definitions and
// references (im2col + GEMM; BlockedConv through NCHW copies), and the
// geometry both paths resolve (nn.ConvGeometry, nn.BlockedConvGeometry).
var convKernels = []Def{
	{Name: "cpu.Conv", Type: "Conv", Since: 1, Types: []tensor.DType{tensor.Float32, tensor.Float16, tensor.BFloat16},
		Prepare: prepareConv},
	{Name: "cpu.FusedConv", Domain: "kiln", Type: "FusedConv", Types: []tensor.DType{tensor.Float32, tensor.Float16},
		Prepare: prepareFusedConv},
	{Name: "cpu.BlockedConv", Domain: "kiln", Type: "BlockedConv", Types: []tensor.DType{tensor.Float32, tensor.Float16},
		Prepare: prepareBlockedConv},
}

func prepareConv(n *ir.Node, opset int64) (ops.Kernel, error) {
	ref, err := ops.Prepare(n, opset)
	if err != nil {
		return nil, err
	}
	geo, ok := ref.(nn.ConvGeometry)
	if !ok {
		return nil, fmt.Errorf("the reference kernel %T of Conv has no geometry", ref)
	}
	return &convOp{ref: ref, geo: geo}, nil
}

// convOp is ONNX Conv's fast kernel (cpu.Conv): float32, float16 and
// bfloat16 (widened to float32) by cpu.Conv2D on 2-D shapes, the im2col
// path on the others; Infer is the reference's.
type convOp struct {
	ref ops.Kernel
	geo nn.ConvGeometry
}

func (k *convOp) Infer(in []*ir.Value) ([]ir.Type, error) { return k.ref.Infer(in) }

func (k *convOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("Conv", in, 2); err != nil {
		return nil, err
	}
	x, w, b := in[0], in[1], input(in, 2)
	switch x.DType {
	case tensor.Float32, tensor.Float16, tensor.BFloat16:
	default:
		return k.ref.Run(env, in)
	}
	if w.DType != x.DType || (b != nil && b.DType != x.DType) {
		return nil, badInput("Conv of %v with weights %v", x.DType, w.DType)
	}
	s, outShape, err := k.geo.ConvSetup(x, w, b)
	if err != nil {
		return nil, err
	}
	y, err := newOut(env, x.DType, outShape)
	if err != nil {
		return nil, err
	}
	var bias []float32
	if x.DType == tensor.Float32 {
		if b != nil {
			bias = b.Float32s()
		}
		convF32(s, x.Float32s(), w.Float32s(), bias, y.Float32s())
		return env.One(y), nil
	}
	if b != nil {
		bias = b.ToFloat32()
	}
	yf := make([]float32, y.Len())
	convF32(s, x.ToFloat32(), w.ToFloat32(), bias, yf)
	if y, err = narrow(x.DType, slices.Clone(outShape), yf); err != nil {
		return nil, err
	}
	return env.One(y), nil
}

// convF32 is the float32 convolution: 2-D ones run cpu.Conv2D, the others
// (and shapes Conv2D rejects, such as empty ones) the generic im2col path,
// which is also faster than Conv2D on 1-D ones.
func convF32(s *nn.ConvShape, x, w, bias, y []float32) {
	if p, ok := s.Conv2D(); ok {
		cpu.Conv2D(p, x, w, bias, y)
		return
	}
	s.Generic(x, w, bias, y)
}

// narrow stores v into a new float16 or bfloat16 tensor of the given shape.
func narrow(dt tensor.DType, shape []int, v []float32) (*tensor.Tensor, error) {
	out, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, err
	}
	switch dt {
	case tensor.Float16:
		h := out.Halfs()
		for i, x := range v {
			h[i] = tensor.Float32ToHalf(x)
		}
	case tensor.BFloat16:
		h := out.BHalfs()
		for i, x := range v {
			h[i] = tensor.Float32ToBF16(x)
		}
	default:
		return nil, fmt.Errorf("%w: Conv of %v", ops.ErrBadInput, dt)
	}
	return out, nil
}
