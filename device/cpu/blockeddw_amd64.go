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
