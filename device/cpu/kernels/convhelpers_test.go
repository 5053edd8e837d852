package kernels

import (
	"math/rand/v2"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/ops/nn"
	"github.com/kilnai/kiln/ops/opstest"
	"github.com/kilnai/kiln/tensor"
)

// Helpers of the convolutions' tests (conv*_test.go, blockedwino_test.go,
// fusedtactic_test.go), as ops/nn's tests have them.

// randTensor returns a tensor of type dt with values uniform in [-1, 1)
// (integers in [-5, 5], unsigned in [0, 9]).
func randTensor(r *rand.Rand, dt tensor.DType, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	for i := 0; i < t.Len(); i++ {
		switch {
		case dt.IsFloat():
			t.SetFloat(i, r.Float64()*2-1)
		case dt.IsSigned():
			t.SetFloat(i, float64(r.IntN(11)-5))
		default:
			t.SetFloat(i, float64(r.IntN(10)))
		}
	}
	return t
}

// pad1 returns p with pads of 1 on every side.
func pad1(p cpu.Conv2DParams) cpu.Conv2DParams {
	p.PadTop, p.PadLeft, p.PadBottom, p.PadRight = 1, 1, 1, 1
	return p
}

// fusedNode is a kiln node op with nIn inputs and the activation act.
func fusedNode(op string, nIn int, act string, params []float32, attrs ...*ir.Attr) *ir.Node {
	n := opstest.Node(op, nIn, 1, attrs...)
	n.Domain = nn.FusedDomain
	n.Attrs["activation"] = ir.StringAttr("activation", act)
	if params != nil {
		n.Attrs["activation_params"] = &ir.Attr{Name: "activation_params", Type: ir.AttrFloats, Floats: params}
	}
	return n
}

// fusedActs are the fused activations, with parameters where they take
// some.
var fusedActs = []struct {
	act    string
	params []float32
}{
	{nn.ActNone, nil}, {nn.ActRelu, nil}, {nn.ActClip, []float32{0, 6}}, {nn.ActSigmoid, nil}, {nn.ActSiLU, nil},
	{nn.ActHardSwish, nil}, {nn.ActLeakyRelu, []float32{0.1}}, {nn.ActHardSigmoid, []float32{0.2, 0.5}},
	{nn.ActGelu, nil}, {nn.ActGeluTanh, nil},
}

// measureScratch is the builder's scratch meter (ops/nn's: device/cpu's
// peak plus ops/nn's counter, where the convolutions count).
func measureScratch(f func()) int64 { return ops.ScratchMeter(f) }
