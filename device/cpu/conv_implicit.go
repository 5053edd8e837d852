package cpu

// Implicit GEMM for stride-1 convolutions.
//
// With the input copied into zero-bordered planes of Hp x Wp, output row oh
// and column ow of tap (kh, kw) and channel c reads plane c at
// (oh+kh*DilH)*Wp + ow + kw*DilW. Over "wide" output rows of Wp columns
// (the last Wp-OutW of each are garbage), consecutive outputs read
// consecutive inputs, so for a fixed tap the GEMM operand B, rows (tap, c)
// and columns oh*Wp+ow, is the padded input itself with row stride Hp*Wp,
// shifted by the tap's offset. The GEMM walks K tap by tap (gemmJob.bRow and
// kSeg), the weights are reordered tap-major once per call, and the wide
// result is copied into y with the bias and activation. No im2col matrix is
// ever built.

// implicitAlways makes tests take the implicit GEMM whenever it can.
var implicitAlways bool

var (
	implicitInPool  floatPool
	implicitWPool   floatPool
	implicitOutPool floatPool
)

// implicitOK reports whether convImplicit should compute p: stride 1, a
// kernel larger than 1x1, enough channels per group that a tap's block of
// K keeps the micro-kernel busy, and few enough garbage columns.
func implicitOK(p Conv2DParams) bool {
	if p.StrideH != 1 || p.StrideW != 1 || p.KH*p.KW == 1 {
		return false
	}
	if implicitAlways {
		return true
	}
	if p.C/p.Group < 32 {
		return false
	}
	wp := p.W + p.PadLeft + p.PadRight
	return (wp-p.OutW())*8 <= p.OutW()
}

// convImplicit computes a stride-1 convolution as an implicit GEMM.
func convImplicit(p Conv2DParams, x, w, bias, y []float32) {
	oh, ow := p.OutH(), p.OutW()
	cg, mg := p.C/p.Group, p.M/p.Group
	taps := p.KH * p.KW
	kk := cg * taps
	hp := p.H + p.PadTop + p.PadBottom
	wp := p.W + p.PadLeft + p.PadRight
	plane := hp * wp
	nt := Threads()

	// The padded input, with slack for the last tap's overrun of the
	// garbage columns.
	inp := implicitInPool.get(p.N*p.C*plane + (p.KW-1)*p.DilW + 64)
	xp := *inp
	clear(xp[p.N*p.C*plane:])
	ParallelFor(p.N*p.C, max(1, 4096/plane), func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			padPlane(xp[pl*plane:(pl+1)*plane], x[pl*p.H*p.W:(pl+1)*p.H*p.W], p, hp, wp)
		}
	})
	// Weights, tap-major: wt[m][t*cg+c] = w[m][c][t].
	wtp := implicitWPool.get(p.M * kk)
	wt := *wtp
	ParallelFor(p.M, max(1, 8192/kk), func(lo, hi int) {
		for m := lo; m < hi; m++ {
			src := w[m*kk : m*kk+kk]
			dst := wt[m*kk : m*kk+kk]
			for c := 0; c < cg; c++ {
				for t, v := range src[c*taps : c*taps+taps] {
					dst[t*cg+c] = v
				}
			}
		}
	})
	tapOff := make([]int, taps)
	for t := range tapOff {
		tapOff[t] = (t/p.KW)*p.DilH*wp + (t%p.KW)*p.DilW
	}
	bRow := func(q int) int { return (q%cg)*plane + tapOff[q/cg] }

	// Items: (image, group, band of output rows).
	ng := p.N * p.Group
	rowsPer := max(1, min(oh, max(256, im2colTile/kk)/wp))
	bands := (oh + rowsPer - 1) / rowsPer
	parallelItems := ng*bands >= 4*nt || (ng*bands)%nt == 0 && ng*bands >= nt
	if !parallelItems {
		for b := bands + 1; b <= oh && oh/b*wp >= 64; b++ {
			if (ng*b)%nt == 0 {
				bands, parallelItems = b, true
				break
			}
		}
	}
	rowsPer = (oh + bands - 1) / bands
	bands = (oh + rowsPer - 1) / rowsPer
	items := ng * bands
	gemmThreads := 1
	if !parallelItems {
		gemmThreads = nt
	}
	run := func(item int, tmp []float32) {
		band := item % bands
		g := item / bands % p.Group
		n := item / bands / p.Group
		r0 := band * rowsPer
		r1 := min(r0+rowsPer, oh)
		cols := (r1 - r0) * wp
		job := &gemmJob{
			kern: active, m: mg, n: cols, k: kk, alpha: 1, beta: 0,
			a: wt[g*mg*kk:], lda: kk,
			b: xp[(n*p.C+g*cg)*plane+r0*wp:], ldb: plane,
			c: tmp, ldc: cols,
			bRow: bRow, kSeg: cg,
		}
		job.parallel(gemmThreads)
		var bg []float32
		if bias != nil {
			bg = bias[g*mg : g*mg+mg]
		}
		// Copy the valid columns out, adding the bias and activation.
		for m := 0; m < mg; m++ {
			yr := y[((n*p.M+g*mg+m)*oh+r0)*ow:]
			tr := tmp[m*cols:]
			for r := 0; r < r1-r0; r++ {
				copy(yr[r*ow:r*ow+ow], tr[r*wp:r*wp+ow])
			}
			var b []float32
			if bg != nil {
				b = bg[m : m+1]
			}
			epilogue(p, yr, ow, 1, (r1-r0)*ow, b)
		}
	}
	tmpSize := mg * rowsPer * wp
	work := func(lo, hi int) {
		tp := implicitOutPool.get(tmpSize)
		for it := lo; it < hi; it++ {
			run(it, *tp)
		}
		implicitOutPool.put(tp)
	}
	if parallelItems {
		ParallelFor(items, (items+nt-1)/nt, work)
	} else {
		work(0, items)
	}
	implicitInPool.put(inp)
	implicitWPool.put(wtp)
}
