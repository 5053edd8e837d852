package math

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// Activations with attributes: each Prepare reads them once
// (ops.ActivationAttrs, as the CUDA kernels do) and builds a unary kernel
// closing over their values.

func registerActivation(name string, t ops.Traits, prep func(a ops.ActivationAttrs) *unary) {
	ops.Register(ops.Def{Type: name, Traits: t, Attrs: activationAttrs, Prepare: func(n *ir.Node, opset int64) (ops.Kernel, error) {
		a, err := ops.ParseActivationAttrs(n, opset)
		if err != nil {
			return nil, err
		}
		u := prep(a)
		u.name = name
		return u, nil
	}})
}

// activationAttrs is the Def.Attrs of the activations with attributes.
func activationAttrs(n *ir.Node, opset int64) (any, error) { return ops.ParseActivationAttrs(n, opset) }

func init() {
	registerActivation("LeakyRelu", ops.ElementwiseUnary, func(a ops.ActivationAttrs) *unary {
		alpha := a.Alpha
		al := float64(alpha)
		return newUnary("", func(x float64) float64 {
			if x < 0 {
				return al * x
			}
			return x
		}, mapF32(func(x float32) float32 {
			if x < 0 {
				return alpha * x
			}
			return x
		}), intNone)
	})
	registerActivation("Elu", ops.ElementwiseUnary, func(a ops.ActivationAttrs) *unary {
		alpha := float64(a.Alpha)
		return newUnary("", func(x float64) float64 {
			if x < 0 {
				return alpha * (math.Exp(x) - 1)
			}
			return x
		}, nil, intNone)
	})
	registerActivation("Selu", ops.ElementwiseUnary, func(a ops.ActivationAttrs) *unary {
		alpha := float64(a.Alpha)
		gamma := float64(a.Gamma)
		return newUnary("", func(x float64) float64 {
			if x <= 0 {
				return gamma * (alpha*math.Exp(x) - alpha)
			}
			return gamma * x
		}, nil, intNone)
	})
	registerActivation("Celu", ops.ElementwiseUnary, func(a ops.ActivationAttrs) *unary {
		alpha := float64(a.Alpha)
		return newUnary("", func(x float64) float64 {
			return math.Max(0, x) + math.Min(0, alpha*(math.Exp(x/alpha)-1))
		}, nil, intNone)
	})
	registerActivation("ThresholdedRelu", ops.ElementwiseUnary, func(a ops.ActivationAttrs) *unary {
		alpha := float64(a.Alpha)
		return newUnary("", func(x float64) float64 {
			if x > alpha {
				return x
			}
			return 0
		}, nil, intNone)
	})
	registerActivation("HardSigmoid", ops.ElementwiseUnary, func(a ops.ActivationAttrs) *unary {
		alpha := a.Alpha
		beta := a.Beta
		return newUnary("", func(x float64) float64 {
			return math.Max(0, math.Min(1, float64(alpha)*x+float64(beta)))
		}, mapF32(func(x float32) float32 { return max(0, min(1, alpha*x+beta)) }), intNone)
	})
	registerActivation("HardSwish", ops.ElementwiseUnary, func(ops.ActivationAttrs) *unary {
		return newUnary("", func(x float64) float64 {
			return x * math.Max(0, math.Min(1, x/6+0.5))
		}, mapF32(func(x float32) float32 { return x * max(0, min(1, x/6+0.5)) }), intNone)
	})
	registerActivation("Gelu", ops.ElementwiseUnary, func(a ops.ActivationAttrs) *unary {
		const c = 0.7978845608028654 // sqrt(2/pi)
		if a.Tanh {
			return newUnary("", func(x float64) float64 {
				return 0.5 * x * (1 + math.Tanh(c*(x+0.044715*x*x*x)))
			}, func(dst, src []float32) {
				t := make([]float32, len(dst))
				for i, x := range src[:len(dst)] {
					t[i] = c * (x + 0.044715*x*x*x)
				}
				tanhF32(t, t)
				for i, x := range src[:len(dst)] {
					dst[i] = 0.5 * x * (1 + t[i])
				}
			}, intNone)
		}
		return newUnary("", func(x float64) float64 {
			return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
		}, func(dst, src []float32) {
			t := make([]float32, len(dst))
			for i, x := range src[:len(dst)] {
				t[i] = x * (1 / math.Sqrt2)
			}
			erfF32(t, t)
			for i, x := range src[:len(dst)] {
				dst[i] = 0.5 * x * (1 + t[i])
			}
		}, intNone)
	})
	registerActivation("Shrink", 0, func(a ops.ActivationAttrs) *unary {
		bias := float64(a.Bias)
		lambd := float64(a.Lambd)
		return newUnary("", func(x float64) float64 {
			switch {
			case x < -lambd:
				return x + bias
			case x > lambd:
				return x - bias
			}
			return 0
		}, nil, intFloat)
	})
}
