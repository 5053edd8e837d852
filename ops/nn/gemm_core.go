package nn

import (
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops"
)

// gemmGrain is the minimum number of multiply-adds one goroutine of the
// generic GEMM handles.
const gemmGrain = 1 << 16

// gemm computes C = alpha*op(A)*op(B) + beta*C on row-major matrices of any
// numeric type with BLAS semantics (see cpu.Sgemm): float32 goes to
// cpu.Sgemm, other types to gemmPlain. When beta is zero C is only
// written. The im2col references, ConvTranspose, the RNNs and MatMul's
// reference call it; Gemm's reference calls gemmPlain for every type (its
// fast kernel, cpu.Gemm in device/cpu/kernels, is the one on cpu.Sgemm).
func gemm[T ops.Number](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if af, ok := any(a).([]float32); ok && k > 0 {
		cpu.Sgemm(transA, transB, m, n, k, float32(alpha), af, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
		return
	}
	gemmPlain(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemmPlain is gemm by plain loops (in float32 too), rows split over the
// thread pool.
func gemmPlain[T ops.Number](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		for i := 0; i < m; i++ {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				if beta == 0 {
					row[j] = 0
				} else {
					row[j] *= beta
				}
			}
		}
		return
	}
	grain := max(1, gemmGrain/max(1, n*k))
	cpu.ParallelFor(m, grain, func(lo, hi int) {
		gemmRows(transA, transB, lo, hi, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	})
}

// gemmRows computes rows [lo, hi) of the product of gemm.
func gemmRows[T ops.Number](transA, transB bool, lo, hi, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	aAt := func(i, p int) T {
		if transA {
			return a[p*lda+i]
		}
		return a[i*lda+p]
	}
	for i := lo; i < hi; i++ {
		row := c[i*ldc : i*ldc+n]
		if transB {
			for j := range row {
				br := b[j*ldb : j*ldb+k]
				var s T
				if transA {
					for p, bv := range br {
						s += a[p*lda+i] * bv
					}
				} else {
					ar := a[i*lda : i*lda+k]
					for p, bv := range br {
						s += ar[p] * bv
					}
				}
				if beta == 0 {
					row[j] = alpha * s
				} else {
					row[j] = alpha*s + beta*row[j]
				}
			}
			continue
		}
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
		for p := 0; p < k; p++ {
			av := alpha * aAt(i, p)
			br := b[p*ldb : p*ldb+n]
			for j, bv := range br {
				row[j] += av * bv
			}
		}
	}
}
