package math

import (
	"math"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

// Activations with attributes: each Prepare reads them once and builds a
// unary kernel closing over their values.

func registerActivation(name string, t ops.Traits, prep func(a *ops.Attrs) *unary) {
	ops.Register(ops.Def{Type: name, Traits: t, Prepare: func(n *ir.Node, _ int64) (ops.Kernel, error) {
		a := ops.AttrsOf(n)
		u := prep(a)
		if err := a.Err(); err != nil {
			return nil, err
		}
		u.name = name
		return u, nil
	}})
}

func init() {
	registerActivation("LeakyRelu", ops.ElementwiseUnary, func(a *ops.Attrs) *unary {
		alpha := a.Float("alpha", 0.01)
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
	registerActivation("Elu", ops.ElementwiseUnary, func(a *ops.Attrs) *unary {
		alpha := float64(a.Float("alpha", 1))
		return newUnary("", func(x float64) float64 {
			if x < 0 {
				return alpha * (math.Exp(x) - 1)
			}
			return x
		}, nil, intNone)
	})
	registerActivation("Selu", ops.ElementwiseUnary, func(a *ops.Attrs) *unary {
		alpha := float64(a.Float("alpha", 1.67326319217681884765625))
		gamma := float64(a.Float("gamma", 1.05070102214813232421875))
		return newUnary("", func(x float64) float64 {
			if x <= 0 {
				return gamma * (alpha*math.Exp(x) - alpha)
			}
			return gamma * x
		}, nil, intNone)
	})
	registerActivation("Celu", ops.ElementwiseUnary, func(a *ops.Attrs) *unary {
		alpha := float64(a.Float("alpha", 1))
		if alpha == 0 {
			a.Fail("alpha", "must not be 0")
		}
		return newUnary("", func(x float64) float64 {
			return math.Max(0, x) + math.Min(0, alpha*(math.Exp(x/alpha)-1))
		}, nil, intNone)
	})
	registerActivation("ThresholdedRelu", ops.ElementwiseUnary, func(a *ops.Attrs) *unary {
		alpha := float64(a.Float("alpha", 1))
		return newUnary("", func(x float64) float64 {
			if x > alpha {
				return x
			}
			return 0
		}, nil, intNone)
	})
	registerActivation("HardSigmoid", ops.ElementwiseUnary, func(a *ops.Attrs) *unary {
		alpha := a.Float("alpha", 0.2)
		beta := a.Float("beta", 0.5)
		return newUnary("", func(x float64) float64 {
			return math.Max(0, math.Min(1, float64(alpha)*x+float64(beta)))
		}, mapF32(func(x float32) float32 { return max(0, min(1, alpha*x+beta)) }), intNone)
	})
	registerActivation("HardSwish", ops.ElementwiseUnary, func(*ops.Attrs) *unary {
		return newUnary("", func(x float64) float64 {
			return x * math.Max(0, math.Min(1, x/6+0.5))
		}, mapF32(func(x float32) float32 { return x * max(0, min(1, x/6+0.5)) }), intNone)
	})
	registerActivation("Gelu", ops.ElementwiseUnary, func(a *ops.Attrs) *unary {
		const c = 0.7978845608028654 // sqrt(2/pi)
		if a.OneOf("approximate", a.String("approximate", "none"), "none", "tanh") == "tanh" {
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
	registerActivation("Shrink", 0, func(a *ops.Attrs) *unary {
		bias := float64(a.Float("bias", 0))
		lambd := float64(a.Float("lambd", 0.5))
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
