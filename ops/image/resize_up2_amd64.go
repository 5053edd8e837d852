//go:build amd64 && !purego

package image

import "golang.org/x/sys/cpu"

// up2Asm says whether the AVX-512 2x2 enlargement runs.
var up2Asm = cpu.X86.HasAVX512F

//go:noescape
func up2x2AVX512(dst, src *uint32, rows, w int)

// up2x2 writes every input row of w elements (src holds rows of them) as
// two output rows of 2w elements with each element twice (dst holds
// 4*len(src) elements).
func up2x2(dst, src []uint32, w int) {
	if len(src) == 0 || w == 0 {
		return
	}
	rows := len(src) / w
	_, _ = src[rows*w-1], dst[4*rows*w-1]
	if !up2Asm {
		up2x2Go(dst, src, w)
		return
	}
	up2x2AVX512(&dst[0], &src[0], rows, w)
}
