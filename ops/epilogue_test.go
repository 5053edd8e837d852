package ops_test

import (
	"math"
	"testing"

	"github.com/kilnai/kiln/ops"
)

// TestApplySerial checks every fused activation against its formula in
// float64 (the transcendental ones within fastmath's float32 error).
func TestApplySerial(t *testing.T) {
	xs := []float32{-7.5, -3, -1, -0.25, 0, 0.1, 0.5, 1, 2.5, 6, 9}
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, tc := range []struct {
		e   ops.EpilogueAttrs
		f   func(x float64) float64
		tol float64
	}{
		{ops.EpilogueAttrs{}, func(x float64) float64 { return x }, 0},
		{ops.EpilogueAttrs{Activation: "Relu"}, func(x float64) float64 { return max(x, 0) }, 0},
		{ops.EpilogueAttrs{Activation: "Clip", P0: -1, P1: 2}, func(x float64) float64 { return min(max(x, -1), 2) }, 0},
		{ops.EpilogueAttrs{Activation: "Sigmoid"}, sig, 1e-6},
		{ops.EpilogueAttrs{Activation: "SiLU"}, func(x float64) float64 { return x * sig(x) }, 1e-5},
		{ops.EpilogueAttrs{Activation: "HardSwish"}, func(x float64) float64 { return x * max(0, min(1, x/6+0.5)) }, 1e-6},
		{ops.EpilogueAttrs{Activation: "LeakyRelu", P0: 0.1}, func(x float64) float64 {
			if x < 0 {
				return 0.1 * x
			}
			return x
		}, 1e-6},
		{ops.EpilogueAttrs{Activation: "HardSigmoid", P0: 0.2, P1: 0.5}, func(x float64) float64 { return max(0, min(1, 0.2*x+0.5)) }, 1e-6},
		{ops.EpilogueAttrs{Activation: "Gelu"}, func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }, 1e-5},
		{ops.EpilogueAttrs{Activation: "GeluTanh"}, func(x float64) float64 {
			return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
		}, 1e-5},
	} {
		y := append([]float32(nil), xs...)
		tc.e.ApplySerial(y)
		for i, x := range xs {
			want := tc.f(float64(x))
			if d := math.Abs(float64(y[i]) - want); d > tc.tol*max(1, math.Abs(want)) {
				t.Errorf("%q(%v) = %v, want %v", tc.e.Activation, x, y[i], want)
			}
		}
	}
}
