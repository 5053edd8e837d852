//go:build amd64 && !purego

package cpu

//go:generate go run gen_blockeddw_amd64.go

// bdwAsmOK reports whether bdwBand3x3 runs p with the AVX-512 kernels of
// blockeddw_amd64.s: 3x3, dilation 1, column stride 1 or 2 (any row
// stride), with the AVX-512 kernel active.
func bdwAsmOK(p *Conv2DParams) bool {
	return active == avx512Kernel && p.KH == 3 && p.KW == 3 && p.DilH == 1 && p.DilW == 1 &&
		(p.StrideW == 1 || p.StrideW == 2)
}

// bdwBand3x3 computes output rows [i0, i1) like bdwRowGo with
// bdw3x3Band1AVX512 or bdw3x3Band2AVX512, for a p that bdwAsmOK accepts:
// one call per band. The kernel reads only the rows inside the plane and,
// of those, only columns inside [0, W): pixels [jlo, jhi) have every tap
// inside, the others are checked tap by tap.
func bdwBand3x3(p *Conv2DParams, g *bdwGeom, xs, ws []float32, v *bdwVecs, zs, ys []float32, i0, i1 int) {
	ow := g.ow
	if i0 < 0 || i1 > g.oh || i0 >= i1 {
		panic("cpu: blocked depthwise band outside the plane")
	}
	_ = xs[p.H*p.W*Block-1]
	_ = ws[9*Block-1]
	out := ys[i0*ow*Block : i1*ow*Block]
	var z *float32
	if zs != nil {
		z = &zs[i0*ow*Block : i1*ow*Block][0]
	}
	jlo, jhi := g.jlo, g.jhi
	if p.StrideW == 1 {
		bdw3x3Band1AVX512(&xs[0], p.H, p.StrideH, p.PadTop, i0, i1, &ws[0], v, z, &out[0], ow, jlo, jhi, p.W, p.PadLeft)
	} else {
		bdw3x3Band2AVX512(&xs[0], p.H, p.StrideH, p.PadTop, i0, i1, &ws[0], v, z, &out[0], ow, jlo, jhi, p.W, p.PadLeft)
	}
}

//go:noescape
func bdw3x3Band1AVX512(x *float32, h, sh, padt, i0, i1 int, wt *float32, v *bdwVecs, z, out *float32, ow, jlo, jhi, w, padl int)

//go:noescape
func bdw3x3Band2AVX512(x *float32, h, sh, padt, i0, i1 int, wt *float32, v *bdwVecs, z, out *float32, ow, jlo, jhi, w, padl int)

// bdwTapsOK reports whether bdwRowTaps runs p with bdwTaps1AVX512 or
// bdwTaps2AVX512: column stride 1 or 2, at most bdwMaxTaps taps, the
// AVX-512 kernel active.
func bdwTapsOK(p *Conv2DParams) bool {
	return active == avx512Kernel && p.KH*p.KW <= bdwMaxTaps && (p.StrideW == 1 || p.StrideW == 2)
}

// bdwRowTaps computes output row i like bdwRowGo with the tap-list
// kernels: pixels [jlo, jhi) (every column inside the row) in one call
// with the row's taps (those of rows inside the plane), each other pixel
// in a call of its own with the taps inside the plane. Offsets are bytes
// from the call's first pixel, so nothing outside xs is read.
func bdwRowTaps(p *Conv2DParams, g *bdwGeom, xs, ws []float32, v *bdwVecs, zs, ys []float32, i int) {
	var taps [2 * bdwMaxTaps]int64
	ow, s := g.ow, p.StrideW
	_ = xs[p.H*p.W*Block-1]
	_ = ws[p.KH*p.KW*Block-1]
	o := i * ow * Block
	out := ys[o : o+ow*Block]
	var zrow []float32
	if zs != nil {
		zrow = zs[o : o+ow*Block]
	}
	run := func(x0 int, n, j0, npix int) {
		var z *float32
		if zrow != nil {
			z = &zrow[j0*Block]
		}
		if s == 1 {
			bdwTaps1AVX512(&xs[x0], &taps[0], n, npix, &ws[0], v, z, &out[j0*Block])
		} else {
			bdwTaps2AVX512(&xs[x0], &taps[0], n, npix, &ws[0], v, z, &out[j0*Block])
		}
	}
	// list sets taps to pixel j's taps inside the plane, offsets from
	// column c0 of row 0; all: every column assumed inside.
	list := func(j, c0 int, all bool) int {
		n := 0
		for kh := 0; kh < p.KH; kh++ {
			ih := i*p.StrideH - p.PadTop + kh*p.DilH
			if ih < 0 || ih >= p.H {
				continue
			}
			for kw := 0; kw < p.KW; kw++ {
				iw := j*s - p.PadLeft + kw*p.DilW
				if !all && (iw < 0 || iw >= p.W) {
					continue
				}
				taps[2*n] = int64(4 * Block * (ih*p.W + iw - c0))
				taps[2*n+1] = int64(4 * Block * (kh*p.KW + kw))
				n++
			}
		}
		return n
	}
	for j := 0; j < ow; j++ {
		if j == g.jlo && g.jlo < g.jhi {
			c0 := g.jlo*s - p.PadLeft
			n := list(g.jlo, c0, true)
			// the last pixel's taps end inside the plane: the offsets
			// are checked against xs from c0
			if n > 0 && int(taps[2*n-2])/4+c0*Block+Block+(g.jhi-1-g.jlo)*s*Block > len(xs) {
				panic("cpu: blocked depthwise taps outside the plane")
			}
			run(c0*Block, n, g.jlo, g.jhi-g.jlo)
			j = g.jhi - 1
			continue
		}
		n := list(j, 0, false)
		run(0, n, j, 1)
	}
}

//go:noescape
func bdwTaps1AVX512(x *float32, taps *int64, ntaps, npix int, wt *float32, v *bdwVecs, z, out *float32)

//go:noescape
func bdwTaps2AVX512(x *float32, taps *int64, ntaps, npix int, wt *float32, v *bdwVecs, z, out *float32)
