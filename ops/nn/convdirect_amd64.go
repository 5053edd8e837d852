//go:build amd64 && !purego

package nn

import "golang.org/x/sys/cpu"

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
func convDirectAVX512x3fullpf(k int, a, b *float32, offs *int32, c *float32, ldc int, bias *float32, lo, hi float32, clamp bool, n, rows int, z *float32)

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
	case n <= 32:
		convDirectAVX512x2(k, &a[0], &src[j0], &offs[0], &out[0], ldc, bias, lo, hi, clampOn, n, rows, zp)
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
