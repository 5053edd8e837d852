//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// lnAsm says whether the AVX2+FMA row loops of SkipLayerNormalization run.
var lnAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func lnSumAVX2(x *float32, n int) float32

//go:noescape
func lnSqDevAVX2(x *float32, n int, mean float32) float32

//go:noescape
func lnAddSumAVX2(dst, x, skip *float32, n int) float32

//go:noescape
func lnApplyAVX2(dst, x, gamma, beta *float32, n int, mean, inv float32)

// lnVec returns how many leading elements of a row (a multiple of 8) the
// vector loops handle: 0 without AVX2 and FMA.
func lnVec(n int) int {
	if !lnAsm {
		return 0
	}
	return n &^ 7
}

// lnSum returns the sum of x[:k] (k from lnVec, not 0).
func lnSum(x []float32, k int) float32 { return lnSumAVX2(&x[:k][0], k) }

// lnAddSum sets dst = x + skip over [:k] and returns the sum of dst[:k],
// added in the order lnSum adds (so that the row's mean is the same).
func lnAddSum(dst, x, skip []float32, k int) float32 {
	return lnAddSumAVX2(&dst[:k][0], &x[:k][0], &skip[:k][0], k)
}

// lnSqDev returns the sum of (x[i]-mean)² over x[:k].
func lnSqDev(x []float32, k int, mean float32) float32 {
	return lnSqDevAVX2(&x[:k][0], k, mean)
}

// lnApply sets dst[i] = (x[i]-mean)*inv*gamma[i] + beta[i] for i < k
// (beta may be nil).
func lnApply(dst, x, gamma, beta []float32, k int, mean, inv float32) {
	var bp *float32
	if beta != nil {
		bp = &beta[:k][0]
	}
	lnApplyAVX2(&dst[:k][0], &x[:k][0], &gamma[:k][0], bp, k, mean, inv)
}
