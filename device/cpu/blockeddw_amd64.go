//go:build amd64 && !purego

package cpu

//go:generate go run gen_blockeddw_amd64.go

// bdwAsmOK reports whether bdwRow3x3 runs p with the AVX-512 kernels of
// blockeddw_amd64.s: 3x3, dilation 1, column stride 1 or 2 (any row
// stride), with the AVX-512 kernel active.
func bdwAsmOK(p *Conv2DParams) bool {
	return active == avx512Kernel && p.KH == 3 && p.KW == 3 && p.DilH == 1 && p.DilW == 1 &&
		(p.StrideW == 1 || p.StrideW == 2)
}

// bdwRow3x3 computes output row i like bdwRowGo with bdw3x3s1AVX512 or
// bdw3x3s2AVX512, for a p that bdwAsmOK accepts. The kernel reads only
// the rows inside the plane (their bits in the row mask) and, of those,
// only columns inside [0, W): pixels [jlo, jhi) have every tap inside,
// the others are checked tap by tap.
func bdwRow3x3(p *Conv2DParams, xs, ws []float32, v *bdwVecs, zs, ys []float32, i int) {
	ow := p.OutW()
	wb := p.W * Block
	_ = xs[p.H*wb-1]
	_ = ws[9*Block-1]
	ih0 := i*p.StrideH - p.PadTop
	var rows [3]*float32
	mask := 0
	for kh := range rows {
		rows[kh] = &xs[0]
		if ih := ih0 + kh; ih >= 0 && ih < p.H {
			rows[kh] = &xs[ih*wb]
			mask |= 1 << kh
		}
	}
	o := i * ow * Block
	out := ys[o : o+ow*Block]
	var z *float32
	if zs != nil {
		z = &zs[o : o+ow*Block][0]
	}
	s := p.StrideW
	jlo := min(ow, (p.PadLeft+s-1)/s)
	jhi := 0
	if t := p.W - 3 + p.PadLeft; t >= 0 {
		jhi = t/s + 1
	}
	jhi = min(ow, max(jhi, jlo))
	if s == 1 {
		bdw3x3s1AVX512(rows[0], rows[1], rows[2], mask, &ws[0], v, z, &out[0], ow, jlo, jhi, p.W, p.PadLeft)
	} else {
		bdw3x3s2AVX512(rows[0], rows[1], rows[2], mask, &ws[0], v, z, &out[0], ow, jlo, jhi, p.W, p.PadLeft)
	}
}

//go:noescape
func bdw3x3s1AVX512(x0, x1, x2 *float32, rmask int, wt *float32, v *bdwVecs, z, out *float32, ow, jlo, jhi, w, padl int)

//go:noescape
func bdw3x3s2AVX512(x0, x1, x2 *float32, rmask int, wt *float32, v *bdwVecs, z, out *float32, ow, jlo, jhi, w, padl int)
