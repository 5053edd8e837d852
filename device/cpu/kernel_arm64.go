//go:build arm64 && !purego

package cpu

// kernels lists the kernels this CPU can run, the preferred one first.
// Advanced SIMD (NEON) is part of every arm64 processor.
func kernels() []*kernel { return []*kernel{neonKernel, genericKernel} }

// fmaPeak has no arm64 measurement: it reports false.
func fmaPeak(n int) bool { return false }

// neonKernel is the NEON GEMM micro-kernel (4 rows by 16 columns, 16
// four-lane accumulators) with the pure-Go GEMV, dot and depthwise
// kernels.
var neonKernel = &kernel{
	name:    "neon",
	mr:      4,
	nr:      16,
	gemm:    gemmNEON,
	gemvN:   gemvNGo,
	dot4:    dot4Go,
	nAlign:  64,
	dw3x3s1: dw3x3s1Go,
	dw3x3s2: dw3x3s2Go,
	gather2: gather2Go,
}

// gemmNEON computes the 4x16 tile C = alpha*A*B + beta*C over k steps (see
// kernel.gemm); with beta zero C is only written.
//
//go:noescape
func gemmNEON(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)
