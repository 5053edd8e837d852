//go:build amd64 && !purego

package cpu

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:generate go run int8_gen_amd64.go

// int8Kernels lists the int8 kernels this CPU can run, the preferred one
// first.
func int8Kernels() []*int8Kernel {
	var ks []*int8Kernel
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI {
		ks = append(ks, int8VNNIKernel)
	}
	if cpu.X86.HasAVX2 {
		ks = append(ks, int8AVX2Kernel)
	}
	return append(ks, int8GenericKernel)
}

// int8VNNIKernel is the AVX-512 VNNI kernel: VPDPBUSD on 6 rows x 64
// columns.
var int8VNNIKernel = &int8Kernel{name: "avx512vnni", mr: 6, nr: 64, tile: int8TileVNNI, row: int8RowAVX512Go, tileEp: int8TileEpVNNI, mm: int8MMVNNI}

// int8AVX2Kernel is the AVX2 kernel: VPMADDWD on sign-extended int16, 6
// rows x 8 columns (narrower edge tiles in Go).
var int8AVX2Kernel = &int8Kernel{name: "avx2", mr: 6, nr: 8, wide: true, tile: int8TileAVX2}

func int8TileVNNI(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, rows, cols int) {
	int8VNNITiles[rows-1][(cols+15)/16-1](nq, w, corr, x, ps, c, ldc, cols)
}

// int8TileEpVNNI is the tileEp of the VNNI kernel.
func int8TileEpVNNI(rows, nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int) {
	zi := 0
	if z != nil {
		zi = 1
	}
	int8VNNIETiles[rows-1][(cols+15)/16-1][zi](nq, w, corr, x, ps, scale, bias, z, ldz, dst, ldo, lo, hi, cols)
}

type int8VNNIEFunc = func(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

var int8VNNIETiles = [6][4][2]int8VNNIEFunc{
	{{int8VNNIE1x1, int8VNNIE1x1z}, {int8VNNIE1x2, int8VNNIE1x2z}, {int8VNNIE1x3, int8VNNIE1x3z}, {int8VNNIE1x4, int8VNNIE1x4z}},
	{{int8VNNIE2x1, int8VNNIE2x1z}, {int8VNNIE2x2, int8VNNIE2x2z}, {int8VNNIE2x3, int8VNNIE2x3z}, {int8VNNIE2x4, int8VNNIE2x4z}},
	{{int8VNNIE3x1, int8VNNIE3x1z}, {int8VNNIE3x2, int8VNNIE3x2z}, {int8VNNIE3x3, int8VNNIE3x3z}, {int8VNNIE3x4, int8VNNIE3x4z}},
	{{int8VNNIE4x1, int8VNNIE4x1z}, {int8VNNIE4x2, int8VNNIE4x2z}, {int8VNNIE4x3, int8VNNIE4x3z}, {int8VNNIE4x4, int8VNNIE4x4z}},
	{{int8VNNIE5x1, int8VNNIE5x1z}, {int8VNNIE5x2, int8VNNIE5x2z}, {int8VNNIE5x3, int8VNNIE5x3z}, {int8VNNIE5x4, int8VNNIE5x4z}},
	{{int8VNNIE6x1, int8VNNIE6x1z}, {int8VNNIE6x2, int8VNNIE6x2z}, {int8VNNIE6x3, int8VNNIE6x3z}, {int8VNNIE6x4, int8VNNIE6x4z}},
}

// int8MMVNNI is the mm tile of the VNNI kernel.
func int8MMVNNI(rows, nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64) {
	zi := 0
	if z != nil {
		zi = 1
	}
	int8MMVNNITiles[rows-1][zi](nq, a, lda, w, corr, scale, bias, z, ldz, dst, ldo, lo, hi, mask)
}

type int8MMFunc = func(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

var int8MMVNNITiles = [6][2]int8MMFunc{
	{int8MMVNNI1, int8MMVNNI1z}, {int8MMVNNI2, int8MMVNNI2z}, {int8MMVNNI3, int8MMVNNI3z},
	{int8MMVNNI4, int8MMVNNI4z}, {int8MMVNNI5, int8MMVNNI5z}, {int8MMVNNI6, int8MMVNNI6z},
}

func int8TileAVX2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, rows, cols int) {
	if cols != 8 {
		int8TileRef[int16](6, nq, w, x, ps, c, ldc, rows, cols)
		return
	}
	int8AVX2Tiles[rows-1](nq, w, x, ps, c, ldc)
}

func init() {
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI && cpu.X86.HasAVX512VBMI {
		int8DwPlane = int8DwPlaneVNNI
	}
}

// int8DwIdx are the VPERMB indexes of the 3x3 depthwise kernel for stride
// 1 and 2: output l of a block reads bytes stride*l, +1, +2 (and one more
// that meets a zero weight).
var int8DwIdx = func() (t [2][64]byte) {
	for s := 1; s <= 2; s++ {
		for l := 0; l < 16; l++ {
			for b := 0; b < 4; b++ {
				t[s-1][4*l+b] = byte(s*l + min(b, 2))
			}
		}
	}
	return t
}()

// int8DwPlaneVNNI is int8DwPlane with VPERMB and VPDPBUSD.
func int8DwPlaneVNNI(x []int8, ld int, w *[3]int32, corr int32, scale, bias float32, z, dst []float32, oh, ow, stride int, lo, hi float32) {
	if oh <= 0 || ow <= 0 {
		return
	}
	// Bounds for the assembly: the blocks of the last output row read 64
	// bytes from 16*stride*(block) on rows stride*(oh-1)+2.
	last := (stride*(oh-1)+2)*ld + stride*((ow-1)&^15) + 64
	if len(x) < last || ld < stride*(ow-1)+3 || len(dst) < oh*ow || (z != nil && len(z) < oh*ow) {
		panic("cpu: int8 depthwise plane: short buffers")
	}
	var zp *float32
	if z != nil {
		zp = &z[0]
	}
	int8DwVNNI(&x[0], ld, &w[0], &int8DwIdx[stride-1][0], corr, scale, bias, zp, &dst[0], oh, ow, stride, lo, hi)
}

//go:noescape
func int8DwVNNI(x *int8, ld int, w *int32, idx *byte, corr int32, scale, bias float32, z, dst *float32, oh, ow, stride int, lo, hi float32)

// quantImpls lists the quantizing loops this CPU can run, the fastest
// first.
func quantImpls() []*quantImpl {
	var qs []*quantImpl
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW {
		qs = append(qs, quantAVX512)
	}
	if cpu.X86.HasAVX2 {
		qs = append(qs, quantAVX2)
	}
	return append(qs, quantGo)
}

var quantAVX512 = &quantImpl{name: "avx512", rows: quantRowsAVX512, quads4: quantQuads4AVX512, f32: quantF32AVX512, scale: scaleRowAVX512, row: int8RowAVX512Go}

var quantAVX2 = &quantImpl{name: "avx2", rows: quantRowsAVX2, quads4: quantQuads4AVX2, f32: quantF32AVX2, scale: scaleRowAVX2, row: int8RowAVX2Go}

// quantRowsAVX2 is quantRows with whole vectors in assembly, then Go.
func quantRowsAVX2(dst []int8, src []float32, scale float32) {
	n8 := len(src) &^ 7
	dst = dst[:len(src)]
	if n8 > 0 {
		int8QuantAVX2(&dst[0], &src[0], n8, scale)
	}
	quantRowsGo(dst[n8:], src[n8:], scale)
}

// quantF32AVX2 is quantF32 with whole vectors in assembly, then Go.
func quantF32AVX2(dst, src []float32, scale float32) {
	n8 := len(src) &^ 7
	dst = dst[:len(src)]
	if n8 > 0 {
		int8QuantF32AVX2(&dst[0], &src[0], n8, scale)
	}
	quantF32Go(dst[n8:], src[n8:], scale)
}

// quantQuads4AVX2 is quantQuads4 with whole vectors in assembly, then Go.
func quantQuads4AVX2(dst []int8, src []float32, lds, n int, scale float32) {
	n8 := n &^ 7
	dst = dst[:4*n]
	if n8 > 0 {
		_ = src[3*lds+n-1] // bounds for the assembly
		int8QuantQuadsAVX2(&dst[0], &src[0], lds, scale, n8)
	}
	if n8 < n {
		quantQuads4Go(dst[4*n8:], src[n8:], lds, n-n8, scale)
	}
}

// scaleRowAVX2 is scaleRow with whole vectors in assembly, then Go.
func scaleRowAVX2(dst, src []float32, scale, bias float32, z []float32, lo, hi float32) {
	n := len(src)
	n8 := n &^ 7
	dst = dst[:n]
	var zt []float32
	if z != nil {
		z = z[:n]
		zt = z[n8:]
	}
	if n8 > 0 {
		var zp *float32
		if z != nil {
			zp = &z[0]
		}
		f32RowAVX2(&src[0], n8, scale, bias, zp, &dst[0], lo, hi)
	}
	scaleRowGo(dst[n8:], src[n8:], scale, bias, zt, lo, hi)
}

// int8RowAVX2Go is int8RowGo with whole vectors in assembly, then Go.
func int8RowAVX2Go(c []int32, scale, bias float32, z, dst []float32, lo, hi float32) {
	n := len(c)
	n8 := n &^ 7
	dst = dst[:n]
	var zt []float32
	if z != nil {
		z = z[:n]
		zt = z[n8:]
	}
	if n8 > 0 {
		var zp *float32
		if z != nil {
			zp = &z[0]
		}
		int8RowAVX2(&c[0], n8, scale, bias, zp, &dst[0], lo, hi)
	}
	int8RowGo(c[n8:], scale, bias, zt, dst[n8:], lo, hi)
}

//go:noescape
func int8QuantAVX2(dst *int8, src *float32, n int, scale float32)

//go:noescape
func int8QuantF32AVX2(dst *float32, src *float32, n int, scale float32)

//go:noescape
func int8QuantQuadsAVX2(dst *int8, src *float32, lds int, scale float32, n int)

//go:noescape
func int8RowAVX2(c *int32, n int, scale, bias float32, z, dst *float32, lo, hi float32)

//go:noescape
func f32RowAVX2(c *float32, n int, scale, bias float32, z, dst *float32, lo, hi float32)

// quantF32AVX512 is quantF32 in assembly.
func quantF32AVX512(dst, src []float32, scale float32) {
	if len(src) == 0 {
		return
	}
	dst = dst[:len(src)]
	int8QuantF32AVX512(&dst[0], &src[0], len(src), scale)
}

// scaleRowAVX512 is scaleRow in assembly.
func scaleRowAVX512(dst, src []float32, scale, bias float32, z []float32, lo, hi float32) {
	n := len(src)
	if n == 0 {
		return
	}
	dst = dst[:n]
	var zp *float32
	if z != nil {
		zp = &z[:n][0]
	}
	f32RowAVX512(&src[0], n, scale, bias, zp, &dst[0], lo, hi)
}

//go:noescape
func int8QuantF32AVX512(dst *float32, src *float32, n int, scale float32)

//go:noescape
func f32RowAVX512(c *float32, n int, scale, bias float32, z, dst *float32, lo, hi float32)

// quantRowsAVX512 is quantRows in assembly.
func quantRowsAVX512(dst []int8, src []float32, scale float32) {
	if len(src) == 0 {
		return
	}
	dst = dst[:len(src)]
	int8QuantAVX512(&dst[0], &src[0], len(src), scale)
}

// quantQuads4AVX512 is quantQuads4 with whole vectors in assembly, then
// Go.
func quantQuads4AVX512(dst []int8, src []float32, lds, n int, scale float32) {
	n16 := n &^ 15
	dst = dst[:4*n]
	if n16 > 0 {
		_ = src[3*lds+n-1] // bounds for the assembly
		int8QuantQuadsAVX512(&dst[0], &src[0], lds, scale, n16)
	}
	if n16 < n {
		quantQuads4Go(dst[4*n16:], src[n16:], lds, n-n16, scale)
	}
}

//go:noescape
func int8QuantAVX512(dst *int8, src *float32, n int, scale float32)

//go:noescape
func int8QuantQuadsAVX512(dst *int8, src *float32, lds int, scale float32, n int)

// int8RowAVX512Go is the AVX-512 row epilogue.
func int8RowAVX512Go(c []int32, scale, bias float32, z, dst []float32, lo, hi float32) {
	n := len(c)
	if n == 0 {
		return
	}
	dst = dst[:n]
	var zp *float32
	if z != nil {
		zp = &z[:n][0]
	}
	int8RowAVX512(&c[0], n, scale, bias, zp, &dst[0], lo, hi)
}

//go:noescape
func int8RowAVX512(c *int32, n int, scale, bias float32, z, dst *float32, lo, hi float32)

type int8VNNIFunc = func(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

var int8VNNITiles = [6][4]int8VNNIFunc{
	{int8VNNI1x1, int8VNNI1x2, int8VNNI1x3, int8VNNI1x4},
	{int8VNNI2x1, int8VNNI2x2, int8VNNI2x3, int8VNNI2x4},
	{int8VNNI3x1, int8VNNI3x2, int8VNNI3x3, int8VNNI3x4},
	{int8VNNI4x1, int8VNNI4x2, int8VNNI4x3, int8VNNI4x4},
	{int8VNNI5x1, int8VNNI5x2, int8VNNI5x3, int8VNNI5x4},
	{int8VNNI6x1, int8VNNI6x2, int8VNNI6x3, int8VNNI6x4},
}

var int8AVX2Tiles = [6]func(nq int, w unsafe.Pointer, x *int8, ps int, c *int32, ldc int){
	int8AVX2x1, int8AVX2x2, int8AVX2x3, int8AVX2x4, int8AVX2x5, int8AVX2x6,
}

//go:noescape
func int8VNNI1x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI1x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI1x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI1x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI2x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI2x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI2x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI2x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI3x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI3x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI3x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI3x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI4x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI4x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI4x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI4x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI5x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI5x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI5x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI5x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI6x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI6x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI6x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8VNNI6x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, cols int)

//go:noescape
func int8AVX2x1(nq int, w unsafe.Pointer, x *int8, ps int, c *int32, ldc int)

//go:noescape
func int8AVX2x2(nq int, w unsafe.Pointer, x *int8, ps int, c *int32, ldc int)

//go:noescape
func int8AVX2x3(nq int, w unsafe.Pointer, x *int8, ps int, c *int32, ldc int)

//go:noescape
func int8AVX2x4(nq int, w unsafe.Pointer, x *int8, ps int, c *int32, ldc int)

//go:noescape
func int8AVX2x5(nq int, w unsafe.Pointer, x *int8, ps int, c *int32, ldc int)

//go:noescape
func int8AVX2x6(nq int, w unsafe.Pointer, x *int8, ps int, c *int32, ldc int)

//go:noescape
func int8MMVNNI1(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI1z(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI2(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI2z(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI3(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI3z(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI4(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI4z(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI5(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI5z(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI6(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8MMVNNI6z(nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)

//go:noescape
func int8VNNIE1x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE1x1z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE1x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE1x2z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE1x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE1x3z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE1x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE1x4z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE2x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE2x1z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE2x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE2x2z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE2x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE2x3z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE2x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE2x4z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE3x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE3x1z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE3x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE3x2z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE3x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE3x3z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE3x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE3x4z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE4x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE4x1z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE4x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE4x2z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE4x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE4x3z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE4x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE4x4z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE5x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE5x1z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE5x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE5x2z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE5x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE5x3z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE5x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE5x4z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE6x1(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE6x1z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE6x2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE6x2z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE6x3(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE6x3z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE6x4(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)

//go:noescape
func int8VNNIE6x4z(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)
