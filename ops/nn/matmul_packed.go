package nn

import (
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// packedMatMulOp is ONNX MatMul whose B is a float32 constant of the graph
// (a layer's weights): one float32 product reads B packed once
// (constWeights) instead of packing it on every call; everything else is
// matMulOp's.
type packedMatMulOp struct {
	matMulOp
	cw   constWeights
	plan MatMulPlanCache
}

// prepareMatMul returns packedMatMulOp for a constant float32 B, else
// matMulOp.
func prepareMatMul(n *ir.Node, opset int64) (ops.Kernel, error) {
	if w := constWeight(n); w != nil {
		k := &packedMatMulOp{}
		k.cw.w = w
		return k, nil
	}
	return matMulOp{}, nil
}

func (k *packedMatMulOp) Run(env *ops.Env, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if len(in) == 2 && in[0] != nil && in[1] != nil && in[0].DType == tensor.Float32 && in[1].DType == tensor.Float32 {
		p, err := k.plan.Get("MatMul", in[0].Shape, in[1].Shape)
		if err != nil {
			return nil, err
		}
		if pb := k.cw.packed(p, in[1]); pb != nil {
			y, err := newOut(env, tensor.Float32, p.Out)
			if err != nil {
				return nil, err
			}
			cpu.SgemmPacked(cpu.Blocking{}, p.M, in[0].Float32s(), p.K, pb, y.Float32s(), p.N, nil)
			return env.One(y), nil
		}
	}
	return k.matMulOp.Run(env, in)
}
