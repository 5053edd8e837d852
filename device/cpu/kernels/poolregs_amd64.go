//go:build amd64 && !purego

package kernels

//go:noescape
func poolS2AVX512(y, x *float32, tab *int, blk *uint16, inv *float32, planes, rows, nblk, xPlane, yPlane, k, w, b0, nint, rn, rxoff, ryoff, rinv, rstep, ow, rreuse, strip int, avg bool)

//go:noescape
func poolS1AVX512(y, x *float32, tab *int, blk *uint16, inv *float32, idx *int32, planes, rows, nblk, xPlane, yPlane, k, w int, avg bool)

// poolRegRun runs poolS2AVX512 or poolS1AVX512 on planes planes of x into y
// as p says.
func poolRegRun(y, x []float32, p *poolRegPlan, planes int) {
	if planes <= 0 {
		return
	}
	p.check(y, x, planes)
	var inv *float32
	if len(p.inv) > 0 {
		inv = &p.inv[0]
	}
	if p.sw == 1 {
		poolS1AVX512(&y[0], &x[0], &p.tab[0], &p.blk[0], inv, &poolS1Idx[0], planes, p.oh, p.nblk, p.h*p.w, p.oh*p.ow, p.kw, p.w, p.avg)
		return
	}
	poolS2AVX512(&y[0], &x[0], &p.tab[0], &p.blk[0], inv, planes, p.oh, p.nblk, p.h*p.w, p.oh*p.ow, p.kw, p.w, p.b0, p.nint, p.reg[0], p.reg[1], p.reg[2], p.reg[3], p.reg[4], p.reg[5], p.reg[6], p.stripRows(), p.avg)
}
