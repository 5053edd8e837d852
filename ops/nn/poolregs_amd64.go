//go:build amd64 && !purego

package nn

//go:noescape
func poolS2AVX512(y, x *float32, tab *int, blk *uint16, inv *float32, planes, rows, nblk, xPlane, yPlane, k, w int, avg bool)

// poolS2 runs poolS2AVX512 on planes planes of x into y as p says.
func poolS2(y, x []float32, p *poolS2Plan, planes int) {
	if planes <= 0 {
		return
	}
	p.check(y, x, planes)
	var inv *float32
	if len(p.inv) > 0 {
		inv = &p.inv[0]
	}
	poolS2AVX512(&y[0], &x[0], &p.tab[0], &p.blk[0], inv, planes, p.oh, p.nblk, p.h*p.w, p.oh*p.ow, p.kw, p.w, p.avg)
}
