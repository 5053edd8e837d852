package math

import "github.com/kilnai/kiln/internal/fastmath"

// Single-precision kernels for the activations that dominate real models
// live in internal/fastmath, shared with the fused operators of ops/nn;
// the names below keep this package's loops and tests short. The scalar
// forms are for odd elements and tests.

// sigmoidF32 computes dst = 1/(1+e**-src).
func sigmoidF32(dst, src []float32) { fastmath.Sigmoid(dst, src) }

// tanhF32 computes dst = tanh(src).
func tanhF32(dst, src []float32) { fastmath.Tanh(dst, src) }

// erfF32 computes dst = erf(src).
func erfF32(dst, src []float32) { fastmath.Erf(dst, src) }

// expf32 returns e**x for x in [-87.33, 88.3] (x is clamped to it; NaN
// stays NaN).
func expf32(x float32) float32 { return fastmath.Exp32(x) }

// sigmoidf32 returns 1/(1+e**-x).
func sigmoidf32(x float32) float32 {
	var d [1]float32
	sigmoidF32(d[:], []float32{x})
	return d[0]
}

// tanhf32 returns tanh(x).
func tanhf32(x float32) float32 {
	var d [1]float32
	tanhF32(d[:], []float32{x})
	return d[0]
}

// erff32 returns the error function of x.
func erff32(x float32) float32 {
	var d [1]float32
	erfF32(d[:], []float32{x})
	return d[0]
}
