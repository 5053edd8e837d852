//go:build amd64 && !purego

package cpu

import "unsafe"

//go:generate go run gen_blockedconv_amd64.go

// bdAsm reports whether blockedDense runs the AVX-512 kernel: the active
// kernel is the AVX-512 one (tests switch it to exercise the others).
func bdAsm() bool { return active == avx512Kernel }

// bdKernel runs bdKernelAVX512 on one segment. blockedDense's row has
// checked the geometry: every address the kernel reads or writes is inside
// x, f.W, y and z.
func bdKernel(a *bdArgs, nb, r, lanes int) {
	bdKernelAVX512(a, nb, r, lanes)
}

//go:noescape
func bdKernelAVX512(a *bdArgs, nb, r, lanes int)

// The assembly reads bdArgs's fields at these offsets
// (gen_blockedconv_amd64.go's constants).
var _ = [1]struct{}{}[unsafe.Offsetof(bdArgs{}.xPix)-40+unsafe.Offsetof(bdArgs{}.nblk)-72+
	unsafe.Offsetof(bdArgs{}.wBlk)-112+unsafe.Offsetof(bdArgs{}.lo)-128+unsafe.Offsetof(bdArgs{}.hi)-132+
	unsafe.Offsetof(bdArgs{}.z)-24+unsafe.Offsetof(bdArgs{}.bias)-32+unsafe.Offsetof(bdArgs{}.yOb)-120+unsafe.Offsetof(bdArgs{}.acc)-136+
	unsafe.Offsetof(bdArgs{}.pfyz)-144+unsafe.Offsetof(bdArgs{}.pfw)-152]

//go:noescape
func bdStemAVX512(a *bdArgs, r, kind int)

// bdStemKind returns the bdStemAVX512 variant for NCHW-input segments of
// one output block with whole tap rows of kw taps at column stride s and
// dilation 1 (gen_blockedconv_amd64.go's stems), or -1.
func bdStemKind(kw, s int) int {
	switch {
	case kw == 7 && s == 2:
		return 0
	case kw == 3 && s == 2:
		return 1
	}
	return -1
}

// bdStem runs bdStemAVX512 on one segment of r <= bdMaxR(1) pixels.
func bdStem(a *bdArgs, r, kind int) {
	bdStemAVX512(a, r, kind)
}
