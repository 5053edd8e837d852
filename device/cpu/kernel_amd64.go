//go:build amd64 && !purego

package cpu

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:generate go run gen_amd64.go

// kernels lists the kernels this CPU can run, the preferred one first.
func kernels() []*kernel {
	var ks []*kernel
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx512Kernel)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Kernel)
	}
	return append(ks, genericKernel)
}

var avx512Kernel = &kernel{
	name:     "avx512",
	mr:       14,
	nr:       32,
	gemm:     gemmAVX512,
	edge:     gemmAVX512Edge,
	edgeBias: gemmAVX512EdgeBias,
	gemvN:    gemvNAVX512,
	dot4:     dot4AVX512,
	nAlign:   128,
	dw3x3s1:  dw3x3s1AVX512Checked,
	dw3x3s2:  dw3x3s2AVX512Checked,
	gather2:  gather2AVX512,
}

var avx2Kernel = &kernel{
	name:    "avx2",
	mr:      6,
	nr:      16,
	gemm:    gemmAVX2,
	gemvN:   gemvNAVX2Tail,
	dot4:    dot4AVX2Tail,
	nAlign:  64,
	dw3x3s1: dw3x3s1AVX2Tail,
	dw3x3s2: dw3x3s2Go,
	gather2: gather2Go,
}

// gemvNAVX2Tail is gemvNAVX2 on the columns that fill 8-wide vectors and
// pure Go on the rest.
func gemvNAVX2Tail(k int, x, b *float32, ldb int, y *float32, n int) {
	n8 := n &^ 7
	if n8 > 0 {
		gemvNAVX2(k, x, b, ldb, y, n8)
	}
	if n8 < n {
		gemvNGo(k, x, (*float32)(unsafe.Add(unsafe.Pointer(b), 4*n8)), ldb, (*float32)(unsafe.Add(unsafe.Pointer(y), 4*n8)), n-n8)
	}
}

// dot4AVX2Tail is dot4AVX2 on the steps that fill 8-wide vectors and pure
// Go on the rest.
func dot4AVX2Tail(k int, x, b *float32, ldb int, out *float32) {
	k8 := k &^ 7
	o := unsafe.Slice(out, 4)
	if k8 > 0 {
		dot4AVX2(k8, x, b, ldb, out)
	} else {
		o[0], o[1], o[2], o[3] = 0, 0, 0, 0
	}
	if k8 < k {
		xs := unsafe.Slice(x, k)
		bs := unsafe.Slice(b, 3*ldb+k)
		for p := k8; p < k; p++ {
			v := xs[p]
			o[0] += v * bs[p]
			o[1] += v * bs[ldb+p]
			o[2] += v * bs[2*ldb+p]
			o[3] += v * bs[3*ldb+p]
		}
	}
}

// checkDW panics unless in and dst are long enough for a 3x3 depthwise
// kernel of the given stride (in with dwSlack floats of slack): the
// assembly reads and writes through raw pointers.
func checkDW(in []float32, ld int, wt, dst []float32, ldo, oh, ow, stride int) {
	if oh <= 0 || ow <= 0 || len(wt) < 9 || ld < stride*(ow-1)+3 ||
		len(in) < ((oh-1)*stride+2)*ld+stride*(ow-1)+3+dwSlack-3 || len(dst) < (oh-1)*ldo+ow {
		panic("cpu: depthwise 3x3 kernel called with short buffers")
	}
}

func dw3x3s1AVX512Checked(in []float32, ld int, wt, dst []float32, ldo, oh, ow int, b, lo, hi float32) {
	checkDW(in, ld, wt, dst, ldo, oh, ow, 1)
	dw3x3s1AVX512(&in[0], ld, &wt[0], &dst[0], ldo, oh, ow, b, lo, hi)
}

func dw3x3s2AVX512Checked(in []float32, ld int, wt, dst []float32, ldo, oh, ow int, b, lo, hi float32) {
	checkDW(in, ld, wt, dst, ldo, oh, ow, 2)
	dw3x3s2AVX512(&in[0], ld, &wt[0], &dst[0], ldo, oh, ow, b, lo, hi)
}

// gather2AVX512 is gather2 with whole vectors in assembly while they stay
// inside src, then pure Go.
func gather2AVX512(dst, src []float32) {
	n16 := min(len(dst), len(src)/2) &^ 15
	if n16 > 0 {
		gatherStride2AVX512(&dst[0], &src[0], n16)
	}
	gather2Go(dst[n16:], src[2*n16:])
}

// dw3x3s1AVX2Tail runs dw3x3s1AVX2 on the columns that fill 8-wide vectors
// and pure Go on the rest.
func dw3x3s1AVX2Tail(in []float32, ld int, wt, dst []float32, ldo, oh, ow int, b, lo, hi float32) {
	checkDW(in, ld, wt, dst, ldo, oh, ow, 1)
	ow8 := ow &^ 7
	if ow8 > 0 {
		dw3x3s1AVX2(&in[0], ld, &wt[0], &dst[0], ldo, oh, ow8, b, lo, hi)
	}
	if ow8 < ow {
		dw3x3s1Go(in[ow8:], ld, wt, dst[ow8:], ldo, oh, ow-ow8, b, lo, hi)
	}
}

// fmaPeak runs n iterations of 384 flops of independent FMAs, or reports
// false where the CPU has no AVX-512.
func fmaPeak(n int) bool {
	if !cpu.X86.HasAVX512F {
		return false
	}
	fmaPeakAVX512(n)
	return true
}

func fmaPeakAVX512(n int)

//go:noescape
func gatherStride2AVX512(dst, src *float32, n int)

//go:noescape
func dw3x3s1AVX512(in *float32, ld int, w *float32, out *float32, ldo, oh, ow int, b, lo, hi float32)

//go:noescape
func dw3x3s2AVX512(in *float32, ld int, w *float32, out *float32, ldo, oh, ow int, b, lo, hi float32)

//go:noescape
func dw3x3s1AVX2(in *float32, ld int, w *float32, out *float32, ldo, oh, ow int, b, lo, hi float32)

// gemmAVX512 is the full 14x32 AVX-512 tile.
func gemmAVX512(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32) {
	gemmAVX512x14(k, a, lda, b, ldb, c, ldc, alpha, beta, 32)
}

// gemmAVX512Edge is a tile of mr <= 14 rows and nr <= 32 columns.
func gemmAVX512Edge(mr, nr, k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32) {
	gemmAVX512Rows[mr-1](k, a, lda, b, ldb, c, ldc, alpha, beta, nr)
}

// gemmAVX512EdgeBias is gemmAVX512Edge adding bias[j] to column j.
func gemmAVX512EdgeBias(mr, nr, k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, bias *float32) {
	gemmAVX512BiasRows[mr-1](k, a, lda, b, ldb, c, ldc, alpha, beta, nr, bias)
}

var gemmAVX512BiasRows = [14]func(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32){
	gemmAVX512Biasx1, gemmAVX512Biasx2, gemmAVX512Biasx3, gemmAVX512Biasx4, gemmAVX512Biasx5, gemmAVX512Biasx6, gemmAVX512Biasx7,
	gemmAVX512Biasx8, gemmAVX512Biasx9, gemmAVX512Biasx10, gemmAVX512Biasx11, gemmAVX512Biasx12, gemmAVX512Biasx13, gemmAVX512Biasx14,
}

var gemmAVX512Rows = [14]func(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int){
	gemmAVX512x1, gemmAVX512x2, gemmAVX512x3, gemmAVX512x4, gemmAVX512x5, gemmAVX512x6, gemmAVX512x7,
	gemmAVX512x8, gemmAVX512x9, gemmAVX512x10, gemmAVX512x11, gemmAVX512x12, gemmAVX512x13, gemmAVX512x14,
}

//go:noescape
func gemmAVX2(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func gemvNAVX512(k int, x, b *float32, ldb int, y *float32, n int)

//go:noescape
func gemvNAVX2(k int, x, b *float32, ldb int, y *float32, n int)

//go:noescape
func dot4AVX512(k int, x, b *float32, ldb int, out *float32)

//go:noescape
func dot4AVX2(k int, x, b *float32, ldb int, out *float32)

//go:noescape
func gemmAVX512x1(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x2(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x3(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x4(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x5(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x6(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x7(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x8(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x9(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x10(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x11(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x12(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x13(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512x14(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int)

//go:noescape
func gemmAVX512Biasx1(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx2(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx3(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx4(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx5(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx6(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx7(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx8(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx9(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx10(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx11(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx12(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx13(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)

//go:noescape
func gemmAVX512Biasx14(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, n int, bias *float32)
