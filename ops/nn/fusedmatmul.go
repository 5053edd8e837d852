package nn

import (
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// fusedMatMulOp is kiln::FusedMatMul: Y = act(MatMul(A, B) + Bias), with
// the optional Bias (input 2) of shape [N] added along Y's last axis. It
// computes float32 only.
//
// This is the op's reference kernel: the product (RunMatMul), then the
// bias and the activation in one pass over Y. The CPU registry
// (device/cpu/kernels, cpu.FusedMatMul) runs the float32 nodes: the
// epilogue inside the GEMM's blocks, constant weights packed once, a
// tactic per cache blocking; it is tested against this kernel.
type fusedMatMulOp struct {
	ep epilogue
}

func prepareFusedMatMul(n *ir.Node, opset int64) (ops.Kernel, error) {
	a, err := ops.ParseFusedMatMulAttrs(n, opset)
	if err != nil {
		return nil, err
	}
	return &fusedMatMulOp{ep: epilogueOf(a.EpilogueAttrs)}, nil
}

func (k *fusedMatMulOp) Infer(in []*ir.Value) ([]ir.Type, error) {
	if err := needValues("FusedMatMul", in, 2); err != nil {
		return nil, err
	}
	if dt := in[0].Type.DType; dt != tensor.Undefined && dt != tensor.Float32 {
		return nil, badInput("FusedMatMul of %v, want float32", dt)
	}
	t, err := matMulOp{}.Infer(in[:2])
	if err != nil {
		return nil, err
	}
	if b := value(in, 2); b != nil && b.Type.Shape != nil && len(b.Type.Shape) != 1 {
		return nil, badInput("FusedMatMul bias has shape %v, want [N]", b.Type.Shape)
	}
	return t, nil
}

func (k *fusedMatMulOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if err := needInputs("FusedMatMul", in, 2); err != nil {
		return nil, err
	}
	a, bm, b := in[0], in[1], input(in, 2)
	for _, t := range []*tensor.Tensor{a, bm, b} {
		if t != nil && t.DType != tensor.Float32 {
			return nil, badInput("FusedMatMul of %v, want float32", t.DType)
		}
	}
	p, err := PlanMatMul("FusedMatMul", a.Shape, bm.Shape)
	if err != nil {
		return nil, err
	}
	y, err := newOut(env, tensor.Float32, p.Out)
	if err != nil {
		return nil, err
	}
	yv := y.Float32s()
	n := 0
	if y.Rank() > 0 {
		n = y.Shape[y.Rank()-1]
	}
	if b != nil && (b.Rank() != 1 || b.Shape[0] != n) {
		return nil, badInput("FusedMatMul bias has shape %v for output %v", b.Shape, y.Shape)
	}
	// overwrites all of y (beta 0), whatever it held
	RunMatMul(p, a.Float32s(), bm.Float32s(), yv)
	if b != nil {
		k.ep.applyBias(yv, b.Float32s(), n)
		return env.One(y), nil
	}
	k.ep.apply(yv)
	return env.One(y), nil
}

func init() {
	ops.Register(ops.Def{Domain: FusedDomain, Type: "FusedMatMul", Attrs: func(n *ir.Node, opset int64) (any, error) { return ops.ParseFusedMatMulAttrs(n, opset) }, Prepare: prepareFusedMatMul})
}
