// Package fastmath holds single-precision kernels for the transcendental
// functions that dominate real models (exp, sigmoid, tanh, erf and the
// activations built on them), shared by the elementwise operators
// (ops/math) and the fused ones (ops/nn). They are accurate to a few units
// in the last place of a float32 (the tests check them against the float64
// functions of package math) and avoid the float64 round trip.
//
// Every slice function computes dst[i] = f(src[i]) for i < len(dst) (src
// must be at least as long); dst and src may be the same slice. They run on
// the caller's goroutine: callers split large slices with cpu.ParallelFor.
// On amd64 with AVX2 and FMA, the slice functions run 8 elements at
// a time in assembly (fastmath_amd64.s, written by gen_amd64.py); their
// results may differ from the scalar forms in the last bits. Where the
// machine also has AVX-512F, the multiples of 16 go through 16-lane forms
// of the same loops (the same bits per element; ExpShifted's sum is grouped
// differently).
package fastmath
