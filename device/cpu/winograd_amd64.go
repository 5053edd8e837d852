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

//go:noescape
func winoGatherAVX512(n int, src *float32, base *int32, off int, dst *float32)

//go:noescape
func winoScatterAVX512(n int, src *float32, obase *int32, off int, dst *float32, b, lo, hi float32)

// winoGather sets d[i] = src[base[i]+off] for every i with base[i] >= 0
// (the others are left undefined); base[i]+off must be inside src.
func winoGather(d, src []float32, base []int32, off int) {
	i := 0
	if n := len(base) &^ 15; n > 0 && active == avx512Kernel {
		_ = d[n-1]
		winoGatherAVX512(n, &src[0], &base[0], off, &d[0])
		i = n
	}
	winoGatherGo(d[i:], src, base[i:], off)
}

// winoScatter sets dst[obase[i]+off] = min(max(s[i]+b, lo), hi) for every
// i with obase[i] >= 0; obase[i]+off must be inside dst.
func winoScatter(dst, s []float32, obase []int32, off int, b, lo, hi float32) {
	i := 0
	if n := len(obase) &^ 15; n > 0 && active == avx512Kernel {
		_ = s[n-1]
		winoScatterAVX512(n, &s[0], &obase[0], off, &dst[0], b, lo, hi)
		i = n
	}
	winoScatterGo(dst, s[i:], obase[i:], off, b, lo, hi)
}
