//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// BlockedPoolAsm says whether BlockedPoolRow runs in AVX-512.
var BlockedPoolAsm = cpu.X86.HasAVX512F

//go:noescape
func blockedPoolRowAVX512(dst, src *float32, n, kh, kw, sx, rs, cs int, avg bool, scale float32)

// BlockedPoolRow is BlockedPoolRowGo in AVX-512 where the machine has it
// (the row kernel of kiln's blocked pools).
func BlockedPoolRow(dst, src []float32, n, kh, kw, sx, rs, cs int, avg bool, scale float32) {
	if !BlockedPoolAsm {
		BlockedPoolRowGo(dst, src, n, kh, kw, sx, rs, cs, avg, scale)
		return
	}
	if n <= 0 {
		return
	}
	_ = dst[n*Block-1]
	_ = src[(n-1)*sx+(kh-1)*rs+(kw-1)*cs+Block-1]
	blockedPoolRowAVX512(&dst[0], &src[0], n, kh, kw, sx*4, rs*4, cs*4, avg, scale)
}
