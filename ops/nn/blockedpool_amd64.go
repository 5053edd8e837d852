//go:build amd64 && !purego

package nn

// blockedPoolAsm says whether the AVX-512 kernel of the blocked pools runs.
var blockedPoolAsm = poolAsm

//go:noescape
func blockedPoolRowAVX512(dst, src *float32, n, kh, kw, sx, rs, cs int, avg bool, scale float32)

// blockedPoolRow is blockedPoolRowGo in AVX-512 where the machine has it.
func blockedPoolRow(dst, src []float32, n, kh, kw, sx, rs, cs int, avg bool, scale float32) {
	if !blockedPoolAsm {
		blockedPoolRowGo(dst, src, n, kh, kw, sx, rs, cs, avg, scale)
		return
	}
	if n <= 0 {
		return
	}
	_ = dst[n*blockLanes-1]
	_ = src[(n-1)*sx+(kh-1)*rs+(kw-1)*cs+blockLanes-1]
	blockedPoolRowAVX512(&dst[0], &src[0], n, kh, kw, sx*4, rs*4, cs*4, avg, scale)
}
