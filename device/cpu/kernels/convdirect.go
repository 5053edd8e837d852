package kernels

import (
	"fmt"
	"math"
	"math/bits"
	"sync"
	"unsafe"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/internal/fastmath"
)

// The direct convolution ("direct" tactic of FusedConv) computes a 2-D
// float32 convolution without an im2col matrix and without packing anything
// per call. The input is copied once into zero-padded planes, split by
// stride phase (for stride 2, the even and odd rows and columns of the
// padded input become four planes), so that every kernel tap of every
// input channel reads a contiguous run of one plane: output position
// (oh, ow) of tap (c, kh, kw) is at offs[c,kh,kw] + oh*Wq + ow, Wq being
// the width of a phase plane. Outputs are computed in tiles of 8 output
// channels x 48 positions held in 24 AVX-512 registers (16 and 32 for
// narrow tiles), each tile summing over all C*KH*KW taps at once, with the
// bias and ReLU/clip applied before its only store. Tiles run over "wide"
// rows of Wq columns into a scratch whose first OutW columns of each row are
// copied out (adding a residual and any other activation on the way), or,
// when the wide rows are the output rows or a cost model prefers it, are
// written in place (directByRow). The weights are packed once
// (newDirectFilter) when the plan selects the tactic, never per call.
// NOTES.md has the measurements.

// directSlack plus the kernel width is how many floats past its last
// phase plane the kernel may read: the last wide row's unused columns of
// the last taps.
const directSlack = 64

// directPool hands out scratch buffers of one use of the direct
// convolution; each use has its own pool, so that a small buffer never
// stands in for a large one (which would then be allocated on every call).
type directPool[T any] struct{ p sync.Pool }

// get returns a buffer of n elements (contents undefined).
func (dp *directPool[T]) get(n int) *[]T {
	scratchAdd(int64(n) * int64(unsafe.Sizeof(*new(T))))
	if v, ok := dp.p.Get().(*[]T); ok && cap(*v) >= n {
		*v = (*v)[:n]
		return v
	}
	s := make([]T, n)
	return &s
}

func (dp *directPool[T]) put(v *[]T) {
	scratchAdd(-int64(len(*v)) * int64(unsafe.Sizeof(*new(T))))
	dp.p.Put(v)
}

var (
	directInPool  directPool[float32] // phase planes
	directOutPool directPool[float32] // wide outputs
	directOffPool directPool[int32]   // tap offsets
)

// directLayout overrides, for tests, how convDirect lays its tiles out
// when the wide rows are not the output rows: layoutAuto by cost
// (directByRow), layoutRows or layoutWide.
var directLayout = layoutAuto

const (
	layoutAuto = iota
	layoutRows
	layoutWide
	layoutVecs
)

// directVecs is where the vectors of one tile of the vector layout
// (convDirectVecs) read and write: vector v's taps at offs[q] + in[v] of
// the phase planes, its output at out[v] of each output channel's plane,
// under the lane mask mask[v]; the kernels read its fields at fixed offsets.
type directVecs struct {
	in, out, mask [3]int64
}

// directVecLayout reports whether tiles of three vectors of 16 columns of
// output rows (oh rows of ow columns, wide rows of wq > ow), written in
// place, cost less than both directByRow's choice of layouts: the vectors
// of a tile need not be neighbours, so a plane of 16 columns or fewer
// still fills 24 accumulators (3 rows) where a tile of one row keeps 8
// busy. Only rows narrower than one tile of 48 take them: wider rows
// already fill whole tiles. Costs as directByRow's, per tap, of the
// kernels on this machine (NOTES.md section 33, BenchmarkDirectTileL1: 210
// GFLOP/s for 3 vectors, 200 for 2, 150 for 1): 12 per tile of 3 vectors,
// 8 of 2, 5.5 of 1 (its 8 broadcasts a tap for 8 FMAs hold it back).
func directVecLayout(oh, ow, wq int, epilogue bool) bool {
	switch directLayout {
	case layoutRows, layoutWide:
		return false
	case layoutVecs:
		return true
	}
	if ow >= directNR {
		return false
	}
	// the cost of n vectors of 16 lanes in tiles of 3
	cost := func(n int) float64 {
		return float64(n/3)*12 + [3]float64{0, 5.5, 8}[n%3]
	}
	segs := (ow + 15) / 16
	vecs := cost(oh * segs)
	rows := float64(oh) * cost(segs)
	wide := cost((oh*wq + 15) / 16)
	if epilogue {
		wide *= 1.10
	} else {
		wide *= 1.05
	}
	return vecs < rows && vecs < wide
}

// directByRow reports whether tiles within output rows of ow columns,
// written in place, cost less than tiles of wide rows of wq columns copied
// out afterwards. Tile costs are in FMA cycles per tap: 12 for 48 lanes,
// 8 for 32, 4.5 for 16 (that kernel waits on its 9 loads, not its 8
// FMAs); the copy out adds about 5% to the wide layout, 10% when it also
// applies the epilogue that the row layout then runs in another pass.
func directByRow(ow, wq int, epilogue bool) bool {
	switch directLayout {
	case layoutRows:
		return true
	case layoutWide:
		return false
	}
	rows := float64(ow/directNR) * 12
	switch r := ow % directNR; {
	case r == 0:
	case r <= 16:
		rows += 4.5
	case r <= 32:
		rows += 8
	default:
		rows += 12
	}
	wide := float64(wq) / directNR * 12 * 1.05
	if epilogue {
		wide = float64(wq) / directNR * 12 * 1.10
	}
	return rows <= wide
}

// directMR x directNR is the register tile of the convDirectAVX512x3
// kernels.
const (
	directMR = 8
	directNR = 48
)

// directFilter is the weights of a convolution packed for the direct
// kernel: for each block of 8 output channels, K = C*KH*KW rows of 8
// weights (output channel minor), rows past M zero.
type directFilter struct {
	m, c, kh, kw int
	packed       []float32
}

// newDirectFilter packs w [M, C, KH, KW].
func newDirectFilter(w []float32, m, c, kh, kw int) *directFilter {
	k := c * kh * kw
	mb := (m + directMR - 1) / directMR
	f := &directFilter{m: m, c: c, kh: kh, kw: kw, packed: make([]float32, mb*k*directMR)}
	for o := 0; o < m; o++ {
		blk := f.packed[(o/directMR)*k*directMR:]
		r := o % directMR
		for q, v := range w[o*k : (o+1)*k] {
			blk[q*directMR+r] = v
		}
	}
	return f
}

// fits reports whether f holds the weights of p.
func (f *directFilter) fits(p cpu.Conv2DParams) bool {
	return f != nil && f.m == p.M && f.c == p.C && f.kh == p.KH && f.kw == p.KW
}

// directApplies reports whether convDirect computes p: one group,
// no dilation, strides 1 or 2, on a CPU with AVX-512, and an image small
// enough that every offset the kernel reads fits its int32 offsets.
func directApplies(p cpu.Conv2DParams) bool {
	if !directAsm || p.Validate() != nil || p.Group != 1 || p.DilH != 1 || p.DilW != 1 ||
		p.StrideH > 2 || p.StrideW > 2 {
		return false
	}
	hq := (p.H + p.PadTop + p.PadBottom + p.StrideH - 1) / p.StrideH
	wq := (p.W + p.PadLeft + p.PadRight + p.StrideW - 1) / p.StrideW
	size := int64(p.C) * int64(min(p.StrideH, p.KH)*min(p.StrideW, p.KW)) * int64(hq) * int64(wq)
	return size+int64(hq)*int64(wq)+directSlack+int64(p.KW) < math.MaxInt32
}

// convDirect computes y = act(conv(x, w) + bias) with the packed filter f
// (see directApplies for what it computes; p.Act is the activation, applied
// in the kernel). With an epilogue ep it computes y = ep(conv(x, w) + bias +
// z) instead (z, y's shape, may be nil), p.Act ignored: the sum and ep's
// activation are applied while the output is copied out of the wide rows,
// not in another pass.
func convDirect(p cpu.Conv2DParams, x []float32, f *directFilter, bias, y, z []float32, ep *epilogue) {
	// the packed filter, held for as long as the plan (as device/cpu
	// counts its transformed Winograd filters)
	scratchAdd(int64(len(f.packed)) * 4)
	if ep != nil {
		p.Act = cpu.ActNone
	} else {
		z = nil
	}
	sh, sw := p.StrideH, p.StrideW
	hp, wp := p.H+p.PadTop+p.PadBottom, p.W+p.PadLeft+p.PadRight
	hq, wq := (hp+sh-1)/sh, (wp+sw-1)/sw
	ph, pw := min(sh, p.KH), min(sw, p.KW) // phases the taps read
	oh, ow := p.OutH(), p.OutW()
	plane := hq * wq
	chStride := ph * pw * plane
	// A pointwise convolution reads the input itself; a larger kernel
	// without pads still needs the copy: its last taps read past the end
	// of the input (the unused columns of the last wide row).
	inPlace := p.KH == 1 && p.KW == 1 && sh == 1 && sw == 1 &&
		p.PadTop == 0 && p.PadLeft == 0 && p.PadBottom == 0 && p.PadRight == 0
	for n := 0; n < p.N; n++ {
		xn := x[n*p.C*p.H*p.W : (n+1)*p.C*p.H*p.W]
		yn := y[n*p.M*oh*ow : (n+1)*p.M*oh*ow]
		src := xn
		var inBuf *[]float32
		srcLen := len(xn)
		if !inPlace {
			srcLen = p.C*chStride + directSlack + p.KW
		}
		bd := directSplit(p, len(f.packed), srcLen, wq, ep != nil)
		if !inPlace {
			if directInScratch != nil {
				buf := directInScratch(srcLen)
				inBuf = &buf
			} else {
				inBuf = directInPool.get(srcLen)
			}
			directInputBands(p, xn, *inBuf, hq, wq, ph, pw, bd)
			src = *inBuf
			// the slack that the last tiles' unused lanes read: zeros,
			// not a recycled buffer's old floats (denormals, NaNs)
			clear(src[p.C*chStride:])
		}
		var zn []float32
		if z != nil {
			zn = z[n*p.M*oh*ow : (n+1)*p.M*oh*ow]
		}
		directRun(p, src, f, bias, yn, zn, ep, plane, chStride, wq, ph, pw, bd)
		if inBuf != nil && directInScratch == nil {
			directInPool.put(inBuf)
		}
	}
}

// directInScratch, when set (tests), hands convDirect the phase-plane
// scratch of n floats in place of directInPool, which it then does not
// keep.
var directInScratch func(n int) []float32

// directOutScratch is directInScratch for the wide outputs (directOutPool).
var directOutScratch func(n int) []float32

// directBand makes convDirect split its input copy and its copy out by
// bands of rows that line up with the rows each thread's tiles compute,
// instead of by channel (NOTES.md section 32; benchmarks compare).
var directBand = false

// directCopyOne is the most floats of phase planes (or of output copied
// out of the wide rows) that convDirect copies on the calling thread alone
// (NOTES.md section 32; benchmarks set it).
var directCopyOne = 0

// directInlineFlops: a convolution of fewer FLOPs (2*M*OutH*OutW*C*KH*KW
// per image) runs its input copy, tiles and copy out on the calling
// thread alone, without waking the worker pool: the worker takes its first
// range ~2.5 us after a call begins (NOTES.md section 32), which a layer
// of a few microseconds cannot win back, and the pool's wake-up and
// polling cost CPU (tinycnn's 3 -> 8 at 32x32, 0.44 MFLOP: 3.5 us of CPU
// on one thread, 6.6 on two, and no faster; NOTES.md section 33).
var directInlineFlops = 1 << 20

// directInline reports whether the convolution p runs on its caller alone
// (directInlineFlops).
func directInline(p cpu.Conv2DParams) bool {
	return 2*int64(p.M)*int64(p.OutH())*int64(p.OutW())*int64(p.C*p.KH*p.KW) < int64(directInlineFlops)
}

// maxBands bounds the threads whose bands directSplit lays out.
const maxBands = 8

// bands is how directRun's tiles fall to the threads: with n > 0, thread
// (part) q of DynamicFor computes the tiles that start in the phase-plane
// rows [row[q], row[q+1]) (row[0] = 0, row[n] = the rows in all); n = 0:
// no banding.
type bands struct {
	n   int
	row [maxBands + 1]int
}

// directSplit returns the bands of directRun's tiles of p at cpu.Threads()
// (n = 0 when the tiles are in block order, with one thread, or with
// directBand off): where DynamicFor's parts of directRun's items begin, in
// rows of the wide output (each phase-plane row is one wide row).
func directSplit(p cpu.Conv2DParams, packed, srcLen, wq int, epilogue bool) bands {
	var bd bands
	threads := cpu.Threads()
	if !directBand || threads < 2 || threads > maxBands {
		return bd
	}
	oh, ow := p.OutH(), p.OutW()
	wide := oh * wq
	if wq != ow && directVecLayout(oh, ow, wq, epilogue) {
		return bd // no bands of vector tiles
	}
	byRow := wq != ow && directByRow(ow, wq, epilogue)
	segs := (ow + directNR - 1) / directNR
	tiles := (wide + directNR - 1) / directNR
	if byRow {
		tiles = oh * segs
	}
	mb := (p.M + directMR - 1) / directMR
	if directBlockOuter(packed*4, srcLen*4, p.M*oh*ow*4, mb, threads) {
		return bd
	}
	items := tiles * mb
	chunk := max(1, items/(8*threads))
	ranges := (items + chunk - 1) / chunk
	workers := min(threads, ranges)
	if workers < 2 {
		return bd
	}
	bd.n = workers
	for q := 1; q < workers; q++ {
		t := q * ranges / workers * chunk / mb
		if byRow {
			bd.row[q] = t / segs
		} else {
			bd.row[q] = t * directNR / wq
		}
	}
	bd.row[workers] = oh
	return bd
}

// directInputBands is directInput with the planes' rows dealt by the bands
// bd (n > 0): thread q writes rows [row[q], row[q+1]) of every phase plane
// (the last band to the planes' end), the rows its tiles read but for the
// last (KH-1)/sh.
func directInputBands(p cpu.Conv2DParams, x, xin []float32, hq, wq, ph, pw int, bd bands) {
	if bd.n == 0 {
		directInput(p, x, xin, hq, wq, ph, pw)
		return
	}
	planes := p.C * ph * pw
	items := bd.n * planes
	// a chunk divides planes, so that no range straddles two bands
	chunk := max(1, min(planes, 4096/max(1, hq*wq/bd.n)))
	for planes%chunk != 0 {
		chunk--
	}
	ic := directInCalls.Get().(*directInCall)
	*ic = directInCall{p: p, x: x, xin: xin, hq: hq, wq: wq, ph: ph, pw: pw, bd: bd, fn: ic.fn}
	dynamicFor(items, chunk, ic.fn)
	*ic = directInCall{fn: ic.fn} // drop the references to the caller's memory
	directInCalls.Put(ic)
}

// padPlaneOff makes directInput copy planes row by row in Go instead of
// with padPlane and padPlaneS2 (tests and benchmarks compare the two).
var padPlaneOff bool

// directInput writes the zero-padded, phase-split copy of one image:
// xin[c][a][b][i][j] = xpad[c][a+i*sh][b+j*sw] for phases a < ph, b < pw.
func directInput(p cpu.Conv2DParams, x, xin []float32, hq, wq, ph, pw int) {
	plane := hq * wq
	items := p.C * ph * pw
	ic := directInCalls.Get().(*directInCall)
	*ic = directInCall{p: p, x: x, xin: xin, hq: hq, wq: wq, ph: ph, pw: pw, fn: ic.fn}
	if items*plane <= directCopyOne || directInline(p) {
		ic.fn(0, items)
	} else {
		chunk := max(1, 4096/max(1, plane), items/(4*cpu.Threads()))
		if sh, sw := p.StrideH, p.StrideW; sh == 2 && sw == 2 && pw == 2 {
			// ranges of whole pairs of column phases (items' padPlaneS2x2)
			chunk += chunk % 2
		}
		dynamicFor(items, chunk, ic.fn)
	}
	*ic = directInCall{fn: ic.fn} // drop the references to the caller's memory
	directInCalls.Put(ic)
}

// directInCall is one directInput call's state, pooled with the function
// it hands to the worker pool (made once per directInCall, so that a call
// allocates nothing).
type directInCall struct {
	p              cpu.Conv2DParams
	x, xin         []float32
	hq, wq, ph, pw int
	bd             bands
	fn             func(lo, hi int)
}

var directInCalls = sync.Pool{New: func() any {
	ic := &directInCall{}
	ic.fn = ic.items
	return ic
}}

// items writes the phase planes [lo, hi) (channel, row phase, column phase).
func (ic *directInCall) items(lo, hi int) {
	if ic.bd.n > 0 {
		ic.bandItems(lo, hi)
		return
	}
	var pms [2]padMasks // per phase column: b alternates between items
	for it := lo; it < hi; it++ {
		// both column phases of a stride-2 row phase from one read of
		// its source rows, when the range holds both
		if ic.pw == 2 && it%2 == 0 && it+1 < hi && ic.planePair(it, &pms[0]) {
			it++
			continue
		}
		ic.planeRows(it, 0, ic.hq, &pms)
	}
}

// planePair writes the whole phase planes pl and pl+1 (column phases 0 and
// 1 of one channel and row phase of a stride-2 convolution) with one
// padPlaneS2x2 call, and reports false (nothing written) where that does
// not run.
func (ic *directInCall) planePair(pl int, pm *padMasks) bool {
	p := &ic.p
	if p.StrideH != 2 || p.StrideW != 2 {
		return false
	}
	plane := ic.hq * ic.wq
	c, a := pl/(ic.ph*ic.pw), pl/ic.pw%ic.ph
	xc := ic.x[c*p.H*p.W : (c+1)*p.H*p.W]
	return padPlaneS2x2(ic.xin[pl*plane:(pl+2)*plane], xc, p.H, p.W, ic.hq, ic.wq, a-p.PadTop, -p.PadLeft, plane, pm)
}

// bandItems writes the (band, plane) items [lo, hi) of directInputBands:
// item it is rows [row[q], row[q+1]) of plane it%planes, q = it/planes.
func (ic *directInCall) bandItems(lo, hi int) {
	planes := ic.p.C * ic.ph * ic.pw
	var pms [2]padMasks // per phase column: b alternates between items
	for it := lo; it < hi; it++ {
		q, pl := it/planes, it%planes
		i0, i1 := ic.bd.row[q], ic.bd.row[q+1]
		if q == ic.bd.n-1 {
			i1 = ic.hq
		}
		if i0 < i1 {
			ic.planeRows(pl, i0, i1, &pms)
		}
	}
}

// planeRows writes rows [i0, i1) of phase plane pl (channel, row phase,
// column phase) with the AVX-512 kernels where they apply (masks kept in
// pms, one per phase column), else row by row.
func (ic *directInCall) planeRows(pl, i0, i1 int, pms *[2]padMasks) {
	p, x, xin, hq, wq, ph, pw := &ic.p, ic.x, ic.xin, ic.hq, ic.wq, ic.ph, ic.pw
	sh, sw := p.StrideH, p.StrideW
	plane := hq * wq
	c, a, b := pl/(ph*pw), pl/pw%ph, pl%pw
	dst := xin[pl*plane+i0*wq : pl*plane+i1*wq]
	xc := x[c*p.H*p.W : (c+1)*p.H*p.W]
	whole := i0 == 0 && i1 == hq
	switch {
	case sh == 1 && sw == 1 && whole && padPlane(dst, xc, p.H, p.W, hq, wq, p.PadTop, p.PadLeft, &pms[0]),
		sh == 1 && sw == 1 && !whole && padPlaneRows(dst, xc, p.H, p.W, i1-i0, wq, p.PadTop-i0, p.PadLeft, &pms[0]),
		sh == 2 && sw == 2 && padPlaneS2(dst, xc, p.H, p.W, i1-i0, wq, a-p.PadTop+2*i0, b-p.PadLeft, &pms[b]):
		return
	}
	// input column of phase column j: b + j*sw - PadLeft
	jlo := max(0, (p.PadLeft-b+sw-1)/sw)
	jhi := min(wq, (p.W+p.PadLeft-b+sw-1)/sw)
	for i := i0; i < i1; i++ {
		row := dst[(i-i0)*wq : (i-i0+1)*wq]
		r := a + i*sh - p.PadTop
		if r < 0 || r >= p.H || jlo >= jhi {
			clear(row)
			continue
		}
		// pads are a column or three: loops beat calls to clear
		for j := range row[:jlo] {
			row[j] = 0
		}
		for j := range row[jhi:] {
			row[jhi+j] = 0
		}
		srow := xc[r*p.W : (r+1)*p.W]
		c0 := b + jlo*sw - p.PadLeft
		d := row[jlo:jhi]
		s := srow[c0:]
		switch sw {
		case 1:
			copy(d, s)
		case 2:
			gatherEven(d, s)
		default:
			for j := range d {
				d[j] = s[j*sw]
			}
		}
	}
}

// directTapOffsets writes into offs[:C*KH*KW] where each tap (c, kh, kw)
// of p reads in the phase planes (channels chStride floats apart, phase
// planes plane floats apart, pw phase columns, rows of wq floats): output
// position (oh, ow) of the tap is at offs[(c*KH+kh)*KW+kw] + oh*wq + ow.
// It returns the largest offset. The strides' divisions are made for the
// first channel's taps only; the other channels add chStride (NOTES.md
// section 27: with a division per tap, 128-channel 3x3 layers spent 10%
// of their time here).
func directTapOffsets(offs []int32, p cpu.Conv2DParams, chStride, plane, wq, pw int) int {
	sh, sw := p.StrideH, p.StrideW
	kk := p.KH * p.KW
	first := offs[:kk]
	maxOff := 0
	for kh := 0; kh < p.KH; kh++ {
		row := (kh%sh)*pw*plane + (kh/sh)*wq
		for kw := 0; kw < p.KW; kw++ {
			o := row + (kw%sw)*plane + kw/sw
			first[kh*p.KW+kw] = int32(o)
			maxOff = max(maxOff, o)
		}
	}
	for c := 1; c < p.C; c++ {
		base := int32(c * chStride)
		dst := offs[c*kk : (c+1)*kk]
		for t, o := range first {
			dst[t] = o + base
		}
	}
	return maxOff + (p.C-1)*chStride
}

// directRun computes all output tiles of one image from src, the phase
// planes (or the input itself for a pointwise convolution).
func directRun(p cpu.Conv2DParams, src []float32, f *directFilter, bias, y, z []float32, ep *epilogue, plane, chStride, wq, ph, pw int, bd bands) {
	oh, ow := p.OutH(), p.OutW()
	k := p.C * p.KH * p.KW
	offBuf := directOffPool.get(k + pcTaps)
	defer directOffPool.put(offBuf)
	offs := *offBuf
	clear(offs[k:]) // read (not used) by the kernel that prefetches pcTaps on
	maxOff := directTapOffsets(offs, p, chStride, plane, wq, pw)
	// wide positions: oh rows of wq columns, the last wq-ow of each unused
	wide := oh * wq
	if last := maxOff + wide; last > len(src) {
		panic(fmt.Sprintf("nn: direct convolution of %+v reads %d floats of %d", p, last, len(src)))
	}
	// Three ways to lay the tiles over the output: when the wide rows are
	// the output rows (wq == ow), tiles of 48 wide positions written in
	// place; when it costs less (directByRow), tiles within one output row
	// (the last one narrower), also written in place; else tiles of 48 wide
	// positions into a scratch copied out afterwards.
	direct := wq == ow
	vecs := !direct && directVecLayout(oh, ow, wq, ep != nil)
	byRow := !direct && !vecs && directByRow(ow, wq, ep != nil)
	segs := (ow + directNR - 1) / directNR // tiles per output row (byRow)
	tiles := (wide + directNR - 1) / directNR
	switch {
	case byRow:
		tiles = oh * segs
	case vecs:
		// vectors of 16 columns of each output row, 3 to a tile
		segs = (ow + 15) / 16
		tiles = (oh*segs + 2) / 3
		// every vector's 16 lanes are read, the last row's last
		// vector's up to 15 past the last wide row
		if last := maxOff + (oh-1)*wq + (segs-1)*16 + 16; last > len(src) {
			panic(fmt.Sprintf("nn: direct convolution of %+v reads %d floats of %d", p, last, len(src)))
		}
	}
	// Rows of one output row's tiles whose last tile holds at most 16
	// columns (ow = 112: two tiles of 48 and one of 16) take those last
	// columns of three rows at a time as one tile of three vectors
	// (directRowVecs): the kernel of 16 columns waits on its loads.
	rowVec := byRow && directRowVecs(ow, segs)
	if rowVec {
		full := segs - 1
		tiles = oh*full + (oh+2)/3
		if last := maxOff + (oh-1)*wq + full*directNR + 16; last > len(src) {
			panic(fmt.Sprintf("nn: direct convolution of %+v reads %d floats of %d", p, last, len(src)))
		}
	}
	mb := (p.M + directMR - 1) / directMR
	out := y
	var outBuf *[]float32
	ldc := wide
	switch {
	case byRow || vecs:
		ldc = oh * ow
	case !direct && directOutScratch != nil:
		buf := directOutScratch(p.M * wide)
		outBuf, out = &buf, buf
	case !direct:
		outBuf = directOutPool.get(p.M * wide)
		out = *outBuf
	}
	var clampOn bool
	var lo, hi float32
	switch p.Act {
	case cpu.ActRelu:
		clampOn, lo, hi = true, 0, float32(math.Inf(1))
	case cpu.ActClip:
		clampOn, lo, hi = true, p.ActMin, p.ActMax
	}
	// The residual with no activation, ReLU or clip is added in the
	// kernel, before its clamp, when the tiles are written in place (not
	// in another pass over the output: directFinish).
	var zt []float32
	if z != nil && ep != nil && outBuf == nil && !directZPass {
		switch ep.act {
		case actNone:
			zt, ep, clampOn = z, nil, false
		case actRelu:
			zt, ep, clampOn, lo, hi = z, nil, true, 0, float32(math.Inf(1))
		case actClip:
			zt, ep, clampOn, lo, hi = z, nil, true, ep.p0, ep.p1
		}
	}
	items := tiles * mb
	// SiLU without a residual runs on each tile after the kernel.
	tileSiLU := ep != nil && ep.act == actSiLU && z == nil
	dc := directCalls.Get().(*directCall)
	*dc = directCall{
		p: p, k: k, f: f, src: src, offs: offs, out: out, bias: bias, zt: zt,
		ldc: ldc, wide: wide, wq: wq, ow: ow, segs: segs, tiles: tiles, mb: mb,
		byRow: byRow, vecs: vecs, nvec: oh * segs, tileSiLU: tileSiLU, lo: lo, hi: hi, clampOn: clampOn, rowVec: rowVec, oh: oh,
		pf:         directPF(p),
		blockOuter: directBlockOuter(len(f.packed)*4, len(src)*4, p.M*oh*ow*4, mb, cpu.Threads()),
		fn:         dc.fn,
	}
	if directInline(p) {
		dc.fn(0, items)
	} else {
		dynamicFor(items, max(1, items/(8*cpu.Threads())), dc.fn)
	}
	*dc = directCall{fn: dc.fn} // drop the references to the caller's memory
	directCalls.Put(dc)
	if tileSiLU {
		ep = nil
	}
	if outBuf != nil && bd.n > 0 {
		directCopyBands(p, y, z, ep, out, wide, wq, bd)
	} else {
		directFinish(p, y, z, ep, out, outBuf != nil, wide, wq)
	}
	if outBuf != nil && directOutScratch == nil {
		directOutPool.put(outBuf)
	}
}

// directCall is one directRun's state, pooled with the function it hands
// to the worker pool (made once per directCall, so that a call allocates
// nothing).
type directCall struct {
	p                        cpu.Conv2DParams
	k                        int
	f                        *directFilter
	src, out, bias, zt       []float32
	offs                     []int32
	ldc, wide, wq, ow        int
	segs, tiles, mb          int
	byRow, tileSiLU, clampOn bool
	vecs                     bool // tiles of 3 vectors of 16 columns (directVecLayout); segs: vectors per output row
	nvec                     int  // vecs: the vectors in all
	pf                       int  // convDirectTileK's prefetching kernels: pfNone, pfNext, pfChannel
	blockOuter               bool
	rowVec                   bool // byRow with each row's last <= 16 columns in tiles of 3 rows' vectors (directRowVecs)
	oh                       int
	lo, hi                   float32
	zero                     [directMR]float32
	fn                       func(i0, i1 int)
}

var directCalls = sync.Pool{New: func() any {
	dc := &directCall{}
	dc.fn = dc.items
	return dc
}}

// items computes the (tile, weight block) items [i0, i1).
func (dc *directCall) items(i0, i1 int) {
	if dc.rowVec {
		dc.itemsRowVec(i0, i1)
		return
	}
	if directItemsDiv {
		dc.itemsDiv(i0, i1)
		return
	}
	p, k, f, mb, tiles := &dc.p, dc.k, dc.f, dc.mb, dc.tiles
	var bv [directMR]float32
	// The item's tile t and block b, and for byRow the tile's row r and
	// segment s, follow from i0 once and are then stepped: a division per
	// item (four with byRow) cost ~10% of a K = 27 layer's time (a 3 -> 64
	// 3x3 stem; NOTES.md section 30).
	t, b := i0/mb, i0%mb
	if dc.blockOuter {
		t, b = i0%tiles, i0/tiles
	}
	segs := max(1, dc.segs)
	r, s := t/segs, t%segs
	lastB := -1
	bp := &dc.zero[0]
	rows := 0
	for it := i0; it < i1; it++ {
		if b != lastB {
			lastB = b
			rows = min(directMR, p.M-b*directMR)
			if dc.bias != nil {
				copy(bv[:], dc.bias[b*directMR:b*directMR+rows])
				bp = &bv[0]
			}
		}
		if dc.vecs {
			dc.vecTile(t, b, rows, bp)
		} else {
			j0 := t * directNR // first position in src (wide) and out
			n := min(directNR, dc.wide-j0)
			o0 := j0
			if dc.byRow {
				c0 := s * directNR
				j0, o0, n = r*dc.wq+c0, r*dc.ow+c0, min(directNR, dc.ow-c0)
			}
			var zs []float32
			if dc.zt != nil {
				zs = dc.zt[b*directMR*dc.ldc+o0:]
			}
			// called directly, not through a func value, so that bv stays on
			// the stack
			convDirectTileK(dc.pf, k, f.packed[b*k*directMR:(b+1)*k*directMR], dc.src, dc.offs, j0, dc.out[b*directMR*dc.ldc+o0:], dc.ldc, bp, dc.lo, dc.hi, dc.clampOn, n, rows, zs)
			if dc.tileSiLU {
				// while the tile is in L1
				for r := range rows {
					row := dc.out[(b*directMR+r)*dc.ldc+o0:][:n]
					convSiLU(row, row)
				}
			}
		}
		// the next item
		nextT := false
		if dc.blockOuter {
			if t++; t == tiles {
				t, r, s = 0, 0, 0
				b++
			} else {
				nextT = true
			}
		} else if b++; b == mb {
			b = 0
			t++
			nextT = true
		}
		if nextT {
			if s++; s == segs {
				s = 0
				r++
			}
		}
	}
}

// directRowVecOff turns directRowVecs off (tests and benchmarks compare).
var directRowVecOff bool

// directRowVecs reports whether a row layout of segs tiles per output row
// of ow columns computes the last tile of each row, of at most 16 columns,
// as vectors of three rows to a tile (convDirectVecs' 3-vector kernel, at
// the 48-column tile's speed: BenchmarkDirectTileL1's x1 150 GFLOP/s, g3
// 210), in place of a 16-column tile per row (NOTES.md section 35).
func directRowVecs(ow, segs int) bool {
	r := ow % directNR
	return !directRowVecOff && directLayout == layoutAuto && segs >= 2 && r > 0 && r <= 16
}

// itemsRowVec computes the items [i0, i1) of the rowVec layout: its tiles
// come in groups of three output rows, each group the rows' segs-1 tiles
// of 48 columns and then one tile of their last columns (one vector per
// row; the last group may hold fewer rows).
func (dc *directCall) itemsRowVec(i0, i1 int) {
	p, k, f, mb, tiles := &dc.p, dc.k, dc.f, dc.mb, dc.tiles
	full := dc.segs - 1
	var bv [directMR]float32
	t, b := i0/mb, i0%mb
	if dc.blockOuter {
		t, b = i0%tiles, i0/tiles
	}
	// tile t: group g of three rows, and in it row rr's tile s, or (vec)
	// the group's tile of last columns; found by division once, then
	// stepped (a division per item costs a K = 27 layer ~10%, NOTES.md
	// section 30)
	var g, rr, s int
	var vec bool
	at := func(t int) {
		grp := 3*full + 1
		g = t / grp
		j := t % grp
		vec = j >= min(3, dc.oh-3*g)*full
		rr, s = j/full, j%full
		if vec {
			rr, s = 0, 0
		}
	}
	at(t)
	lastB := -1
	bp := &dc.zero[0]
	rows := 0
	for it := i0; it < i1; it++ {
		if b != lastB {
			lastB = b
			rows = min(directMR, p.M-b*directMR)
			if dc.bias != nil {
				copy(bv[:], dc.bias[b*directMR:b*directMR+rows])
				bp = &bv[0]
			}
		}
		r0 := 3 * g
		nr := min(3, dc.oh-r0)
		if !vec {
			r, c0 := r0+rr, s*directNR
			j0, o0 := r*dc.wq+c0, r*dc.ow+c0
			var zs []float32
			if dc.zt != nil {
				zs = dc.zt[b*directMR*dc.ldc+o0:]
			}
			convDirectTileK(dc.pf, k, f.packed[b*k*directMR:(b+1)*k*directMR], dc.src, dc.offs, j0, dc.out[b*directMR*dc.ldc+o0:], dc.ldc, bp, dc.lo, dc.hi, dc.clampOn, directNR, rows, zs)
			if dc.tileSiLU {
				for q := range rows {
					row := dc.out[(b*directMR+q)*dc.ldc+o0:][:directNR]
					convSiLU(row, row)
				}
			}
		} else {
			c0 := full * directNR
			n := dc.ow - c0
			var dv directVecs
			for v := range nr {
				dv.in[v], dv.out[v] = int64((r0+v)*dc.wq+c0), int64((r0+v)*dc.ow+c0)
				dv.mask[v] = int64(uint16(1<<n - 1))
			}
			var zs []float32
			if dc.zt != nil {
				zs = dc.zt[b*directMR*dc.ldc:]
			}
			out := dc.out[b*directMR*dc.ldc:]
			convDirectVecs(nr, k, f.packed[b*k*directMR:(b+1)*k*directMR], dc.src, dc.offs, &dv, out, dc.ldc, bp, dc.lo, dc.hi, dc.clampOn, rows, zs)
			if dc.tileSiLU {
				for v := range nr {
					for q := range rows {
						row := out[q*dc.ldc+int(dv.out[v]):][:n]
						convSiLU(row, row)
					}
				}
			}
		}
		// the next item
		nextT := false
		if dc.blockOuter {
			if t++; t == tiles {
				t, b = 0, b+1
				g, rr, s, vec = 0, 0, 0, false
			} else {
				nextT = true
			}
		} else if b++; b == mb {
			b = 0
			t++
			nextT = true
		}
		if nextT {
			switch {
			case vec:
				g, vec = g+1, false
			case s+1 < full:
				s++
			case rr+1 < nr:
				s, rr = 0, rr+1
			default:
				s, rr, vec = 0, 0, true
			}
		}
	}
}

// vecTile computes item (tile t, block b) of the vector layout: output
// channels [8b, 8b+rows) at the vectors 3t, 3t+1, 3t+2 (those there are)
// of 16 columns of the output rows (segs to a row), the bias at bp.
func (dc *directCall) vecTile(t, b, rows int, bp *float32) {
	var vec directVecs
	q := 3 * t
	nv := min(3, dc.nvec-q)
	r, s := q, 0
	if dc.segs > 1 {
		r, s = q/dc.segs, q%dc.segs
	}
	for v := range nv {
		c0 := s * 16
		vec.in[v], vec.out[v] = int64(r*dc.wq+c0), int64(r*dc.ow+c0)
		vec.mask[v] = int64(uint16(1<<min(16, dc.ow-c0) - 1))
		if s++; s == dc.segs {
			s = 0
			r++
		}
	}
	var zs []float32
	if dc.zt != nil {
		zs = dc.zt[b*directMR*dc.ldc:]
	}
	out := dc.out[b*directMR*dc.ldc:]
	convDirectVecs(nv, dc.k, dc.f.packed[b*dc.k*directMR:(b+1)*dc.k*directMR], dc.src, dc.offs, &vec, out, dc.ldc, bp, dc.lo, dc.hi, dc.clampOn, rows, zs)
	if dc.tileSiLU {
		// while the tile is in L1
		for v := range nv {
			n := bits.OnesCount16(uint16(vec.mask[v]))
			for r := range rows {
				row := out[r*dc.ldc+int(vec.out[v]):][:n]
				convSiLU(row, row)
			}
		}
	}
}

// directItemsDiv makes directCall.items find each item's tile and block by
// division, as before section 30 (benchmarks compare).
var directItemsDiv bool

// itemsDiv is items with a division per item.
func (dc *directCall) itemsDiv(i0, i1 int) {
	p, k, f, mb, tiles := &dc.p, dc.k, dc.f, dc.mb, dc.tiles
	var bv [directMR]float32
	for it := i0; it < i1; it++ {
		t, b := it/mb, it%mb
		if dc.blockOuter {
			t, b = it%tiles, it/tiles
		}
		rows := min(directMR, p.M-b*directMR)
		bp := &dc.zero[0]
		if dc.bias != nil {
			copy(bv[:], dc.bias[b*directMR:b*directMR+rows])
			bp = &bv[0]
		}
		if dc.vecs {
			dc.vecTile(t, b, rows, bp)
			continue
		}
		j0 := t * directNR // first position in src (wide) and out
		n := min(directNR, dc.wide-j0)
		o0 := j0
		if dc.byRow {
			r, c0 := t/dc.segs, t%dc.segs*directNR
			j0, o0, n = r*dc.wq+c0, r*dc.ow+c0, min(directNR, dc.ow-c0)
		}
		var zs []float32
		if dc.zt != nil {
			zs = dc.zt[b*directMR*dc.ldc+o0:]
		}
		convDirectTileK(dc.pf, k, f.packed[b*k*directMR:(b+1)*k*directMR], dc.src, dc.offs, j0, dc.out[b*directMR*dc.ldc+o0:], dc.ldc, bp, dc.lo, dc.hi, dc.clampOn, n, rows, zs)
		if dc.tileSiLU {
			for r := range rows {
				row := dc.out[(b*directMR+r)*dc.ldc+o0:][:n]
				convSiLU(row, row)
			}
		}
	}
}

// directNoPF turns the prefetching kernel off (benchmarks compare).
var directNoPF bool

// The prefetches of convDirectTileK's kernels.
const (
	pfNone    = iota
	pfNext    // the next tile's positions, into L2 (directPrefetch)
	pfChannel // the taps pcTaps on, into L1 (directPrefetchChannel)
)

// pcTaps is how many taps ahead the pfChannel kernel prefetches (as
// gen_convdirect_amd64.go's).
const pcTaps = 9

// directPC turns the pfChannel kernel on and off (benchmarks compare).
var directPC = true

// directPartialNoPC keeps the partial tiles (16 < n < 48 positions, or
// every tile without directFull) of pfChannel layers on the kernels
// without the channel prefetch (benchmarks compare; NOTES.md section 35).
var directPartialNoPC bool

// directPCAny turns the pfChannel kernel on for every convolution (benchmarks).
var directPCAny bool

// directPrefetchChannel reports whether directRun's whole tiles prefetch,
// with each tap, the same tap of the next input channel (the pfChannel
// kernel): stride-2 3x3 convolutions of 16 input channels or more, whose
// tiles read four phase planes per channel, ~19 cache lines where stride 1
// reads ~8, from L2 for every block of output channels. Measured (NOTES.md
// section 30, CPU us per call, one thread, with / without): resnet50's 128
// 3x3/2 at 56x56 1434-1786 / 1647-1937, 256 3x3/2 at 28x28 1515-1939 /
// 1890-2065 (5 of 5 rounds each; two threads 4-5 of 5); yolo_tiny's 16 and 32
// channel ones 1-2% (4 of 5); the 3-channel stems, the stride-1 3x3 and
// the 1x1 layers within the rounds' spread.
func directPrefetchChannel(p cpu.Conv2DParams) bool {
	return directPC && (directPCAny || p.KH == 3 && p.KW == 3 && p.StrideH == 2 && p.StrideW == 2 && p.C >= 16)
}

// directPF is the prefetch of directRun's whole tiles for p.
func directPF(p cpu.Conv2DParams) int {
	switch {
	case directPrefetch(p):
		return pfNext
	case directPrefetchChannel(p):
		return pfChannel
	}
	return pfNone
}

// directPrefetch reports whether directRun's tiles prefetch the next tile's
// input (convDirectTileK with pf): for a pointwise convolution read in place whose
// input does not fit in L2 (over 2 MiB). Measured on resnet50's 1x1 layers
// (CPU us per call, one thread, prefetch / none): 256 -> 64 and 256 -> 128 at
// 56x56 (3.2 MB of input) 676-754 / 719-799 and 1313-1388 / 1416-1518; 512 ->
// 128 at 28x28 (1.6 MB) the same; 64 -> 256 at 56x56 (0.8 MB) and the 14x14
// and 7x7 layers 4-10% slower with it.
func directPrefetch(p cpu.Conv2DParams) bool {
	return !directNoPF && p.KH == 1 && p.KW == 1 && p.StrideH == 1 && p.StrideW == 1 &&
		p.PadTop == 0 && p.PadLeft == 0 && p.PadBottom == 0 && p.PadRight == 0 &&
		int64(p.C)*int64(p.H)*int64(p.W)*4 > 2<<20
}

// directZPass makes directRun add the residual in a pass after the
// kernels, as it did before the kernels took it (benchmarks compare).
var directZPass bool

// directOrder overrides, for tests and benchmarks, the order in which
// directRun visits its (tile, weight block) items: orderAuto by
// directBlockOuter, orderTile (every block of a tile in turn) or orderBlock
// (every tile of a block in turn).
var directOrder = orderAuto

const (
	orderAuto = iota
	orderTile
	orderBlock
)

// directBlockOuter reports whether directRun runs every tile of one block
// of 8 output channels before the next block (else every block of one
// tile before the next tile), from the bytes of packed weights, of input
// (the phase planes or the input itself) and of output, and the number of
// blocks mb:
//
//   - with more than 1 MiB of weights, so that the block stays in L1 (else
//     every tile cycles through all the weights from L3);
//   - with an input that stays in L2 (at most 1 MiB) and an output that
//     does not (1 MiB or more) over 4 or more blocks: the tile order writes
//     8*mb output planes at once, a few hundred bytes each before moving
//     on, and its stores then miss the TLB and the write-combining buffers
//     (squeezenet1_1's 3 -> 64 stem: 555-630 -> 408-422 us of CPU; NOTES.md
//     section 18), while the block order writes 8 planes at a time and
//     reads the input from L2 once per block;
//   - with more than one thread, two blocks or more and at least 1.25x
//     the input's bytes in weights: DynamicFor deals the items in
//     contiguous parts, so each thread computes its own output channels
//     and reads only their weights (as convCL's clBlockOuter; NOTES.md
//     section 20: squeezenet1_1's 64 -> 256 1x1 at 13x13, 1.5x, 27 -> 21
//     us at 2 threads; yolo_tiny's 64 -> 64 3x3 at 20x20, 1.19x, lost 10%
//     and keeps the tile order).
func directBlockOuter(wBytes, inBytes, outBytes, mb, threads int) bool {
	switch directOrder {
	case orderTile:
		return false
	case orderBlock:
		return true
	}
	return wBytes > 1<<20 || inBytes <= 1<<20 && outBytes >= 1<<20 && mb >= 4 ||
		threads > 1 && mb > 1 && 4*wBytes >= 5*inBytes
}

// directFinish applies what the kernel did not to the output y: with
// copyOut, out holds it in wide rows (planes of plane floats, rows of wq,
// the first OutW of each used) and is copied into y, adding the residual z
// and the epilogue ep on the way; else y holds it already and ep (with z)
// runs over it in place. ep nil (and z nil): only the copy.
func directFinish(p cpu.Conv2DParams, y, z []float32, ep *epilogue, out []float32, copyOut bool, plane, wq int) {
	oh, ow := p.OutH(), p.OutW()
	// the residual with no activation, ReLU or clip: one vector pass
	lo, hi, clampOn := float32(math.Inf(-1)), float32(math.Inf(1)), false
	addClampOK := z != nil && ep != nil
	if addClampOK {
		switch ep.act {
		case actNone:
		case actRelu:
			lo, clampOn = 0, true
		case actClip:
			lo, hi, clampOn = ep.p0, ep.p1, true
		default:
			addClampOK = false
		}
	}
	switch {
	case !copyOut && ep != nil && z != nil && !addClampOK:
		ep.applyAdd(y, z)
	case !copyOut && ep != nil && z == nil:
		ep.apply(y)
	case copyOut || addClampOK:
		fc := directFinCalls.Get().(*directFinCall)
		*fc = directFinCall{y: y, z: z, ep: ep, out: out, plane: plane, wq: wq, oh: oh, ow: ow,
			lo: lo, hi: hi, clampOn: clampOn, addClampOK: addClampOK, addFn: fc.addFn, copyFn: fc.copyFn, bandFn: fc.bandFn}
		if copyOut && (p.M*oh*ow <= directCopyOne || directInline(p)) {
			fc.copyFn(0, p.M)
		} else if copyOut {
			cpu.ParallelFor(p.M, max(1, 8192/max(1, oh*ow)), fc.copyFn)
		} else {
			dynamicFor(len(y), max(1<<13, len(y)/(4*cpu.Threads())), fc.addFn)
		}
		*fc = directFinCall{addFn: fc.addFn, copyFn: fc.copyFn, bandFn: fc.bandFn} // drop the references to the caller's memory
		directFinCalls.Put(fc)
	}
}

// directFinCall is one directFinish call's state, pooled with the
// functions it hands to the worker pool (made once per directFinCall, so
// that a call allocates nothing).
type directFinCall struct {
	y, z, out           []float32
	ep                  *epilogue
	plane, wq, oh, ow   int
	lo, hi              float32
	clampOn, addClampOK bool
	bd                  bands
	addFn, copyFn       func(lo, hi int)
	bandFn              func(lo, hi int)
}

var directFinCalls = sync.Pool{New: func() any {
	fc := &directFinCall{}
	fc.addFn, fc.copyFn, fc.bandFn = fc.add, fc.copyOut, fc.copyBand
	return fc
}}

// directCopyBands is directFinish's copy out of the wide rows dealt by the
// bands bd (n > 0): thread q copies output rows [row[q], row[q+1]) (the
// last band to the last row) of every channel, the rows its tiles wrote
// (but for a tile that straddles two rows), in place of whole channels.
func directCopyBands(p cpu.Conv2DParams, y, z []float32, ep *epilogue, out []float32, plane, wq int, bd bands) {
	oh, ow := p.OutH(), p.OutW()
	lo, hi, clampOn := float32(math.Inf(-1)), float32(math.Inf(1)), false
	addClampOK := z != nil && ep != nil
	if addClampOK {
		switch ep.act {
		case actNone:
		case actRelu:
			lo, clampOn = 0, true
		case actClip:
			lo, hi, clampOn = ep.p0, ep.p1, true
		default:
			addClampOK = false
		}
	}
	fc := directFinCalls.Get().(*directFinCall)
	*fc = directFinCall{y: y, z: z, ep: ep, out: out, plane: plane, wq: wq, oh: oh, ow: ow,
		lo: lo, hi: hi, clampOn: clampOn, addClampOK: addClampOK, bd: bd, addFn: fc.addFn, copyFn: fc.copyFn, bandFn: fc.bandFn}
	chunk := max(1, min(p.M, 8192/max(1, oh*ow/bd.n)))
	for p.M%chunk != 0 {
		chunk--
	}
	dynamicFor(bd.n*p.M, chunk, fc.bandFn)
	*fc = directFinCall{addFn: fc.addFn, copyFn: fc.copyFn, bandFn: fc.bandFn} // drop the references to the caller's memory
	directFinCalls.Put(fc)
}

// copyBand copies the (band, channel) items [i0, i1) of directCopyBands.
func (fc *directFinCall) copyBand(i0, i1 int) {
	nm := len(fc.y) / (fc.oh * fc.ow)
	for it := i0; it < i1; it++ {
		q, c := it/nm, it%nm
		r0, r1 := fc.bd.row[q], fc.bd.row[q+1]
		if q == fc.bd.n-1 {
			r1 = fc.oh
		}
		fc.copyRows(c, r0, r1)
	}
}

// add adds the residual to y[i0:i1] in place, with the clamp.
func (fc *directFinCall) add(i0, i1 int) {
	addClamp(fc.y[i0:i1], fc.y[i0:i1], fc.z[i0:i1], fc.lo, fc.hi, fc.clampOn)
}

// copyOut copies the output channels [m0, m1) out of the wide rows.
func (fc *directFinCall) copyOut(m0, m1 int) {
	for m := m0; m < m1; m++ {
		fc.copyRows(m, 0, fc.oh)
	}
}

// copyRows copies rows [r0, r1) of output channel m out of the wide rows.
func (fc *directFinCall) copyRows(m, r0, r1 int) {
	y, z, ep, out, plane, wq, oh, ow := fc.y, fc.z, fc.ep, fc.out, fc.plane, fc.wq, fc.oh, fc.ow
	for r := r0; r < r1; r++ {
		yr := y[(m*oh+r)*ow : (m*oh+r+1)*ow]
		switch {
		case ep == nil:
			copy(yr, out[m*plane+r*wq:])
			continue
		case fc.addClampOK:
			addClamp(yr, out[m*plane+r*wq:][:ow], z[(m*oh+r)*ow:][:ow], fc.lo, fc.hi, fc.clampOn)
			continue
		case z != nil:
			fastmath.ScaleAdd(yr, out[m*plane+r*wq:][:ow], 1, z[(m*oh+r)*ow:][:ow])
		default:
			copy(yr, out[m*plane+r*wq:])
		}
		ep.applySerial(yr)
	}
}

// dynamicFor calls fn on consecutive ranges of at most chunk items covering
// [0, n), on up to cpu.Threads() goroutines (the caller's included) that
// take the next range from a shared counter. Unlike cpu.ParallelFor's
// fixed halves, a goroutine that the OS delays (a busy machine) leaves its
// share to the others instead of making the caller wait for it.
func dynamicFor(n, chunk int, fn func(lo, hi int)) { cpu.DynamicFor(n, chunk, fn) }
