package math

import (
	"math"
	"testing"
)

// checkF32 compares f with the float64 reference g on a dense grid of
// [lo, hi], allowing atol + rtol*|want|.
func checkF32(t *testing.T, name string, f func(float32) float32, g func(float64) float64, lo, hi, rtol, atol float64) {
	t.Helper()
	const n = 200001
	worst := 0.0
	for i := 0; i < n; i++ {
		x := float32(lo + (hi-lo)*float64(i)/(n-1))
		want := g(float64(x))
		got := float64(f(x))
		d := math.Abs(got - want)
		if d > atol+rtol*math.Abs(want) {
			t.Fatalf("%s(%g) = %g, want %g", name, x, got, want)
		}
		if want != 0 {
			worst = math.Max(worst, d/math.Abs(want))
		}
	}
	t.Logf("%s: worst relative error %.3g", name, worst)
}

func TestFastMath(t *testing.T) {
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	checkF32(t, "exp", expf32, math.Exp, -87, 88, 4e-7, 0)
	checkF32(t, "sigmoid", sigmoidf32, sig, -80, 80, 4e-7, 0)
	checkF32(t, "tanh", tanhf32, math.Tanh, -12, 12, 4e-7, 0)
	checkF32(t, "tanh small", tanhf32, math.Tanh, -1e-3, 1e-3, 2e-7, 0)
	checkF32(t, "tanh tiny", tanhf32, math.Tanh, -1e-30, 1e-30, 2e-7, 0)
	checkF32(t, "erf", erff32, math.Erf, -6, 6, 5e-7, 0)
	checkF32(t, "erf small", erff32, math.Erf, -1e-3, 1e-3, 2e-7, 0)
	for _, x := range []float32{float32(math.NaN())} {
		for _, f := range []func(float32) float32{expf32, sigmoidf32, tanhf32, erff32} {
			if y := f(x); y == y {
				t.Errorf("f(NaN) = %g", y)
			}
		}
	}
	if sigmoidf32(-100) > 1e-38 || sigmoidf32(100) != 1 || tanhf32(-100) != -1 || erff32(100) != 1 ||
		tanhf32(float32(math.Inf(-1))) != -1 || erff32(float32(math.Inf(1))) != 1 || sigmoidf32(float32(math.Inf(-1))) > 1e-38 {
		t.Error("activations at the extremes")
	}
}
