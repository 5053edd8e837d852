package ops

import "github.com/kilnai/kiln/internal/fastmath"

// ApplySerial runs the activation e over y in place on the caller's
// goroutine (nothing for none): the meaning of a fused operator's
// "activation" and "activation_params", the transcendental ones in
// float32 (internal/fastmath). The fused kernels of every CPU package
// (ops/nn's references and convolutions, device/cpu/kernels' FusedMatMul)
// call it on the blocks they split their outputs into.
//
//	Relu        max(x, 0)
//	Clip        min(max(x, P0), P1)
//	Sigmoid     1/(1+exp(-x))
//	SiLU        x*Sigmoid(x)
//	HardSwish   x*max(0, min(1, x/6+0.5))
//	LeakyRelu   x < 0 ? P0*x : x
//	HardSigmoid max(0, min(1, P0*x+P1))
//	Gelu        0.5*x*(1+erf(x/sqrt(2)))
//	GeluTanh    0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3)))
func (e EpilogueAttrs) ApplySerial(y []float32) {
	switch e.Activation {
	case "Relu":
		for i, v := range y {
			y[i] = max(v, 0)
		}
	case "Clip":
		for i, v := range y {
			y[i] = min(max(v, e.P0), e.P1)
		}
	case "Sigmoid":
		fastmath.Sigmoid(y, y)
	case "SiLU":
		fastmath.SiLU(y, y)
	case "HardSwish":
		for i, v := range y {
			y[i] = v * max(0, min(1, v/6+0.5))
		}
	case "LeakyRelu":
		for i, v := range y {
			if v < 0 {
				y[i] = e.P0 * v
			}
		}
	case "HardSigmoid":
		for i, v := range y {
			y[i] = max(0, min(1, e.P0*v+e.P1))
		}
	case "Gelu":
		fastmath.Gelu(y, y)
	case "GeluTanh":
		fastmath.GeluTanh(y, y)
	}
}
