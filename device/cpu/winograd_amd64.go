//go:build amd64 && !purego

package cpu

// winoRowsAVX512 sets dst[r][i] = sum over k < ns of coef[r*ns+k] *
// src[k][i] for r < nd and i < n, n a multiple of 16.
//
//go:noescape
func winoRowsAVX512(n int, src, dst *[6]*float32, coef *float32, ns, nd int)

// winoRowsAsm applies the transform coef (nd x ns) to the rows with the
// AVX-512 kernel when it is the active one, to the elements up to a
// multiple of 16, and returns how many it did.
func winoRowsAsm(coef []float32, ns, nd int, src, dst *rows) int {
	n := len(src[0]) &^ 15
	if active != avx512Kernel || n == 0 {
		return 0
	}
	var sp, dp [6]*float32
	for k := 0; k < ns; k++ {
		sp[k] = &src[k][0]
	}
	for r := 0; r < nd; r++ {
		dp[r] = &dst[r][0]
		_ = dst[r][n-1]
	}
	for k := 0; k < ns; k++ {
		_ = src[k][n-1]
	}
	winoRowsAVX512(n, &sp, &dp, &coef[0], ns, nd)
	return n
}
