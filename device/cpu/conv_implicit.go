package cpu

import "sync"

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

	j := implicitJobs.Get().(*implicitJob)
	j.p, j.x, j.w, j.bias, j.y = p, x, w, bias, y
	j.hp, j.wp, j.plane, j.cg, j.mg, j.kk, j.taps = hp, wp, plane, cg, mg, kk, taps

	// The padded input, with slack for the last tap's overrun of the
	// garbage columns.
	inp := implicitInPool.get(p.N*p.C*plane + (p.KW-1)*p.DilW + 64)
	j.xp = *inp
	clear(j.xp[p.N*p.C*plane:])
	ParallelFor(p.N*p.C, max(1, 4096/plane), j.padFn)
	// Weights, tap-major: wt[m][t*cg+c] = w[m][c][t].
	wtp := implicitWPool.get(p.M * kk)
	j.wt = *wtp
	ParallelFor(p.M, max(1, 8192/kk), j.reorderFn)
	if cap(j.tapOff) < taps {
		j.tapOff = make([]int, taps)
	}
	j.tapOff = j.tapOff[:taps]
	for t := range j.tapOff {
		j.tapOff[t] = (t/p.KW)*p.DilH*wp + (t%p.KW)*p.DilW
	}

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
	j.gemmThreads = 1
	if !parallelItems {
		j.gemmThreads = nt
	}
	j.oh, j.ow, j.rowsPer, j.bands = oh, ow, rowsPer, bands
	j.tmpSize = mg * rowsPer * wp
	if parallelItems {
		ParallelFor(items, (items+nt-1)/nt, j.workFn)
	} else {
		j.work(0, items)
	}
	implicitInPool.put(inp)
	implicitWPool.put(wtp)
	j.x, j.w, j.bias, j.y, j.xp, j.wt = nil, nil, nil, nil, nil, nil // drop the caller's memory
	implicitJobs.Put(j)
}

// implicitJob is one convImplicit call, pooled with the functions it hands
// to the worker pool and the GEMM (made once per job, so that a call
// allocates nothing).
type implicitJob struct {
	p                        Conv2DParams
	x, w, bias, y            []float32
	xp, wt                   []float32 // the padded input, the tap-major weights
	hp, wp, plane            int
	cg, mg, kk, taps         int
	oh, ow, rowsPer, bands   int
	gemmThreads, tmpSize     int
	tapOff                   []int
	padFn, reorderFn, workFn func(lo, hi int)
	bRowFn                   func(q int) int
}

var implicitJobs = sync.Pool{New: func() any {
	j := &implicitJob{}
	j.padFn, j.reorderFn, j.workFn, j.bRowFn = j.pad, j.reorder, j.work, j.bRow
	return j
}}

// pad copies the planes [lo, hi) of x into xp with their zero borders.
func (j *implicitJob) pad(lo, hi int) {
	p := &j.p
	hw := p.H * p.W
	for pl := lo; pl < hi; pl++ {
		padPlane(j.xp[pl*j.plane:(pl+1)*j.plane], j.x[pl*hw:(pl+1)*hw], *p, j.hp, j.wp)
	}
}

// reorder writes the weights of output channels [lo, hi) tap-major.
func (j *implicitJob) reorder(lo, hi int) {
	kk, cg, taps := j.kk, j.cg, j.taps
	for m := lo; m < hi; m++ {
		src := j.w[m*kk : m*kk+kk]
		dst := j.wt[m*kk : m*kk+kk]
		for c := 0; c < cg; c++ {
			for t, v := range src[c*taps : c*taps+taps] {
				dst[t*cg+c] = v
			}
		}
	}
}

// bRow is the offset in the padded input of row q (tap-major) of B.
func (j *implicitJob) bRow(q int) int { return (q%j.cg)*j.plane + j.tapOff[q/j.cg] }

// work computes the items [lo, hi) with a wide-output buffer of its own.
func (j *implicitJob) work(lo, hi int) {
	tp := implicitOutPool.get(j.tmpSize)
	for it := lo; it < hi; it++ {
		j.item(it, *tp)
	}
	implicitOutPool.put(tp)
}

// item computes one (image, group, band of output rows): the GEMM into
// tmp, then the valid columns copied out with the bias and activation.
func (j *implicitJob) item(item int, tmp []float32) {
	p := &j.p
	bands, cg, mg, kk, wp, plane := j.bands, j.cg, j.mg, j.kk, j.wp, j.plane
	oh, ow := j.oh, j.ow
	band := item % bands
	g := item / bands % p.Group
	n := item / bands / p.Group
	r0 := band * j.rowsPer
	r1 := min(r0+j.rowsPer, oh)
	cols := (r1 - r0) * wp
	job := gemmJob{
		kern: active, m: mg, n: cols, k: kk, alpha: 1, beta: 0,
		a: j.wt[g*mg*kk:], lda: kk,
		b: j.xp[(n*p.C+g*cg)*plane+r0*wp:], ldb: plane,
		c: tmp, ldc: cols,
		bRow: j.bRowFn, kSeg: cg,
	}
	job.parallel(j.gemmThreads)
	var bg []float32
	if j.bias != nil {
		bg = j.bias[g*mg : g*mg+mg]
	}
	// Copy the valid columns out, adding the bias and activation.
	for m := 0; m < mg; m++ {
		yr := j.y[((n*p.M+g*mg+m)*oh+r0)*ow:]
		tr := tmp[m*cols:]
		for r := 0; r < r1-r0; r++ {
			copy(yr[r*ow:r*ow+ow], tr[r*wp:r*wp+ow])
		}
		var b []float32
		if bg != nil {
			b = bg[m : m+1]
		}
		epilogue(*p, yr, ow, 1, (r1-r0)*ow, b)
	}
}
