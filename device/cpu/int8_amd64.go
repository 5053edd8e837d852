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
var int8VNNIKernel = &int8Kernel{name: "avx512vnni", mr: 6, nr: 64, tile: int8TileVNNI, row: int8RowAVX512Go}

// int8AVX2Kernel is the AVX2 kernel: VPMADDWD on sign-extended int16, 6
// rows x 8 columns (narrower edge tiles in Go).
var int8AVX2Kernel = &int8Kernel{name: "avx2", mr: 6, nr: 8, wide: true, tile: int8TileAVX2}

func int8TileVNNI(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, rows, cols int) {
	int8VNNITiles[rows-1][(cols+15)/16-1](nq, w, corr, x, ps, c, ldc, cols)
}

func int8TileAVX2(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, rows, cols int) {
	if cols != 8 {
		int8TileRef[int16](6, nq, w, x, ps, c, ldc, rows, cols)
		return
	}
	int8AVX2Tiles[rows-1](nq, w, x, ps, c, ldc)
}

func init() {
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW {
		quantRows, quantQuads4 = quantRowsAVX512, quantQuads4AVX512
	}
}

// quantRowsAVX512 is quantRows with whole vectors in assembly, then Go.
func quantRowsAVX512(dst []int8, src []float32, scale float32) {
	n16 := len(src) &^ 15
	dst = dst[:len(src)]
	if n16 > 0 {
		int8QuantAVX512(&dst[0], &src[0], n16, scale)
	}
	quantRowsGo(dst[n16:], src[n16:], scale)
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
