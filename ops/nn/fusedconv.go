package nn

import (
	"slices"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// fusedConvOp is kiln::FusedConv: Y = act(Conv(X, W, B) + Z), with the
// attributes of Conv plus the activation ones and an optional residual
// input Z (input 3) of Y's shape. It computes float32 only.
//
// This is its definition (attributes, Infer, the geometry of ConvSetup)
// and its reference kernel: convGeneric (im2col + GEMM), then the residual
// and the activation. The fast kernel, tactical (the algorithms of
// cpu.Conv2DWith, the direct, Winograd, channels-last and transposed-GEMM
// convolutions, im2col with each GEMM blocking), is the CPU registry's
// cpu.FusedConv (device/cpu/kernels), which runs wherever the engine
// prepares the node.
type fusedConvOp struct {
	convOp
	ep epilogue
	// setup is the geometry of the last shapes run
	setup convSetupCache
}

func prepareFusedConv(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseFusedConvAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &fusedConvOp{convOp: convOp{win: windowOf(&a.WindowAttrs), group: int(a.Group)}, ep: epilogueOf(a.EpilogueAttrs)}, nil
}

func (k *fusedConvOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("FusedConv", in, 2); err != nil {
		return nil, err
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && dt != tensor.Float32 {
		return nil, badInput("FusedConv of %v, want float32", dt)
	}
	t, err := k.convOp.Infer(in[:2])
	if err != nil {
		return nil, err
	}
	if z := value(in, 3); z != nil && z.Type.Shape != nil && t[0].Shape != nil {
		if len(z.Type.Shape) != len(t[0].Shape) {
			return nil, badInput("FusedConv residual has shape %v, output %v", z.Type.Shape, t[0].Shape)
		}
	}
	return t, nil
}

// conv2DParams returns the cpu.Conv2D parameters of a 2-D convolution, or
// false when s is not one cpu.Conv2D computes.
func conv2DParams(s *convShape) (cpu.Conv2DParams, bool) {
	g := s.g
	if g.rank() != 2 {
		return cpu.Conv2DParams{}, false
	}
	p := cpu.Conv2DParams{
		N: s.n, C: s.c, H: g.in[0], W: g.in[1], M: s.m, KH: g.kernel[0], KW: g.kernel[1],
		Group: s.group, StrideH: g.stride[0], StrideW: g.stride[1], DilH: g.dil[0], DilW: g.dil[1],
		PadTop: g.padB[0], PadLeft: g.padB[1], PadBottom: g.padE[0], PadRight: g.padE[1],
	}
	if p.Validate() != nil || p.OutH() != g.out[0] || p.OutW() != g.out[1] {
		return cpu.Conv2DParams{}, false
	}
	return p, true
}

func (k *fusedConvOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("FusedConv", in, 2); err != nil {
		return nil, err
	}
	x, w, b, z := in[0], in[1], input(in, 2), input(in, 3)
	for _, t := range []*tensor.Tensor{x, w, b, z} {
		if t != nil && t.DType != tensor.Float32 {
			return nil, badInput("FusedConv of %v, want float32", t.DType)
		}
	}
	s, outShape, err := k.setup.get("FusedConv", &k.win, k.group, x, w, b)
	if err != nil {
		return nil, err
	}
	if z != nil && !slices.Equal(z.Shape, outShape) {
		return nil, badInput("FusedConv residual has shape %v, output %v", z.Shape, outShape)
	}
	y, err := newOut(env, tensor.Float32, outShape)
	if err != nil {
		return nil, err
	}
	var bias []float32
	if b != nil {
		bias = b.Float32s()
	}
	yv := y.Float32s()
	convGeneric(s, x.Float32s(), w.Float32s(), bias, yv) // writes all of y
	if z != nil {
		k.ep.applyAdd(yv, z.Float32s())
	} else {
		k.ep.apply(yv)
	}
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "FusedConv", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseFusedConvAttrs(n, opset) }, Prepare: prepareFusedConv})
}
