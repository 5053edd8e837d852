//go:build amd64 && !purego

package kernels

import (
	"math/bits"

	"golang.org/x/sys/cpu"
)

// directAsm says whether the direct convolution's AVX-512 kernel runs.
var directAsm = cpu.X86.HasAVX512F

// directFull says whether whole tiles run the kernel without masks.
var directFull = true

//go:generate go run gen_convdirect_amd64.go

// The kernels of tiles of 8 output channels x 16, 32 and 48 positions.
//
//go:noescape
func convDirectAVX512x1(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, n, rows int, z *float32)

//go:noescape
func convDirectAVX512x2(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, n, rows int, z *float32)

//go:noescape
func convDirectAVX512x3(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, n, rows int, z *float32)

//go:noescape
func convDirectAVX512x3full(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, n, rows int, z *float32)

//go:noescape
func convDirectAVX512x3fullpc(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, n, rows int, z *float32)

//go:noescape
func convDirectAVX512x2pc(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, n, rows int, z *float32)

//go:noescape
func convDirectAVX512x3pc(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, n, rows int, z *float32)

//go:noescape
func convDirectAVX512x3fullpf(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, n, rows int, z *float32)

// The kernels of tiles of 8 output channels x 1, 2 and 3 vectors of 16
// positions anywhere in the planes (directVecs).
//
//go:noescape
func convDirectAVX512g1(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, vec *directVecs, rows int, z *float32)

//go:noescape
func convDirectAVX512g2(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, vec *directVecs, rows int, z *float32)

//go:noescape
func convDirectAVX512g3(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, vec *directVecs, rows int, z *float32)

// convDirectVecs computes one tile of rows (<= 8) output channels and nv
// (1-3) vectors of 16 positions: vector v reads the taps at src[offs[q] +
// vec.in[v]:][:16] (all 16 lanes: the caller checks that src holds them)
// and writes out[r*ldc+vec.out[v]:] under the lane mask vec.mask[v] (the
// residual z, laid out as out, read under the same mask), the bias added
// and the clamp applied as convDirectTile's.
func convDirectVecs(nv, k int, a, src []float32, offs []int32, vec *directVecs, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, rows int, z []float32) {
	if !directAsm {
		convDirectVecsGo(nv, k, a, src, offs, vec, out, ldc, bias, lo, hi, clampOn, rows, z)
		return
	}
	_ = a[k*directMR-1]
	_ = offs[k-1]
	last := (rows-1)*ldc + int(vec.out[nv-1]) + bits.Len16(uint16(vec.mask[nv-1])) - 1
	_ = out[last]
	var zp *float32
	if z != nil {
		_ = z[last]
		zp = &z[0]
	}
	switch nv {
	case 1:
		convDirectAVX512g1(k, &a[0], &src[0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, vec, rows, zp)
	case 2:
		convDirectAVX512g2(k, &a[0], &src[0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, vec, rows, zp)
	default:
		convDirectAVX512g3(k, &a[0], &src[0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, vec, rows, zp)
	}
}

// convDirectTile computes one tile of rows (<= 8) output channels and n
// (<= 48) wide positions starting at j0: out[r*ldc+j] = clamp(bias[r] +
// sum over q of a[q*8+r]*src[offs[q]+j0+j] + z[r*ldc+j]), z's term only
// when z is not nil, clamped to [lo, hi] when clampOn. The caller checks
// that src holds every offset it reads.
func convDirectTile(k int, a, src []float32, offs []int32, j0 int, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, n, rows int, z []float32) {
	convDirectTileK(pfNone, k, a, src, offs, j0, out, ldc, bias, lo, hi, clampOn, n, rows, z)
}

// convDirectTileK is convDirectTile, or with pf pfNext, for the tiles of a
// pointwise convolution read in place, the kernel whose whole tiles
// prefetch the next tile's input, or with pfChannel the kernel whose whole
// tiles prefetch the taps pcTaps on (see gen_convdirect_amd64.go; offs
// must then hold pcTaps readable entries past k).
func convDirectTileK(pf int, k int, a, src []float32, offs []int32, j0 int, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, n, rows int, z []float32) {
	if !directAsm {
		convDirectTileGo(k, a, src, offs, j0, out, ldc, bias, lo, hi, clampOn, n, rows, z)
		return
	}
	_ = a[k*directMR-1]
	_ = offs[k-1]
	_ = out[(rows-1)*ldc+n-1]
	var zp *float32
	if z != nil {
		_ = z[(rows-1)*ldc+n-1]
		zp = &z[0]
	}
	switch {
	case n <= 16:
		convDirectAVX512x1(k, &a[0], &src[j0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, n, rows, zp)
	case n <= 32 && pf == pfChannel && !directPartialNoPC:
		_ = offs[k+pcTaps-1]
		convDirectAVX512x2pc(k, &a[0], &src[j0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, n, rows, zp)
	case n <= 32:
		convDirectAVX512x2(k, &a[0], &src[j0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, n, rows, zp)
	case (n < directNR || !directFull) && pf == pfChannel && !directPartialNoPC:
		_ = offs[k+pcTaps-1]
		convDirectAVX512x3pc(k, &a[0], &src[j0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, n, rows, zp)
	case n < directNR || !directFull:
		convDirectAVX512x3(k, &a[0], &src[j0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, n, rows, zp)
	case pf == pfChannel:
		_ = offs[k+pcTaps-1]
		convDirectAVX512x3fullpc(k, &a[0], &src[j0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, n, rows, zp)
	case pf == pfNext:
		convDirectAVX512x3fullpf(k, &a[0], &src[j0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, n, rows, zp)
	default:
		convDirectAVX512x3full(k, &a[0], &src[j0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, n, rows, zp)
	}
}
