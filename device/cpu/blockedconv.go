package cpu

import (
	"math"
	"sync"
	"unsafe"
)

// blockedDense computes BlockedConv2D for group 1 (a blocked input, or an
// NCHW one for f.InNCHW) in one DynamicFor call over (image, group of up
// to four output blocks, band of output rows). Each output row is cut into
// segments of pixels: the interior pixels, whose taps all lie inside the
// input's row, in segments of up to bdMaxR(nb) pixels, and the border
// pixels one at a time with their taps outside the row left out; the
// taps' rows outside the input are left out by the row's caller. A 1x1
// stride-1 convolution without pads reads the plane as one long row. A
// segment is computed by bdKernel: the AVX-512 kernel of
// blockedconv_amd64.s, or bdKernelGo. Bias, the residual z and the
// activation are applied to the accumulators before the one store.
func blockedDense(f *BlockedFilter, x, bias, z, y []float32) {
	p := f.P
	oh, ow := p.OutH(), p.OutW()
	mb := Blocks(p.M)
	xlen := BlockedLen(p.N, p.C, p.H*p.W)
	if f.InNCHW {
		xlen = p.N * p.C * p.H * p.W
	}
	ylen := BlockedLen(p.N, p.M, oh*ow)
	if len(x) < xlen || len(y) < ylen || (z != nil && len(z) < ylen) || (bias != nil && len(bias) < p.M) {
		panic("cpu: BlockedConv2D: slice too short")
	}
	if len(f.W) < mb*Blocks(p.C)*p.KH*p.KW*Block*Block && !f.InNCHW || f.InNCHW && len(f.W) < mb*p.C*p.KH*p.KW*Block {
		panic("cpu: BlockedConv2D: filter too short")
	}
	if bdGather && !f.InNCHW && p.KH == 1 && p.KW == 1 && (p.StrideH > 1 || p.StrideW > 1) &&
		p.PadTop == 0 && p.PadLeft == 0 && p.PadBottom == 0 && p.PadRight == 0 &&
		ow < bdGatherRow && mb >= 16 && 4*BlockedLen(1, p.C, oh*ow) <= bdGatherMax {
		// A strided 1x1 convolution (resnet's downsamples): the pixels
		// it reads gathered into a compact blocked input first, then a
		// flat 1x1 over it (the same packed weights: the packing does
		// not depend on the strides): segments of bdMaxR pixels across
		// rows shorter than bdGatherRow (resnet50's 1024 -> 2048 /2 at
		// 14: rows of 7 in 4 + 3), with 16 output blocks or more (a
		// small layer is left alone: resnet_mini's 64 -> 128 /2 at 14 read
		// 1.26 gathered in its model, 0.94-1.03 alone).
		n := BlockedLen(p.N, p.C, oh*ow)
		buf := bdGatherPool.Get().(*[]float32)
		if cap(*buf) < n {
			*buf = make([]float32, n)
		}
		xs := (*buf)[:n]
		gc := bdGatherCalls.Get().(*bdGatherCall)
		gc.p, gc.x, gc.xs = p, x, xs
		if n < reorderParallel {
			gc.items(0, p.N*Blocks(p.C))
		} else {
			DynamicFor(p.N*Blocks(p.C), 1, gc.fn)
		}
		gc.x, gc.xs = nil, nil
		bdGatherCalls.Put(gc)
		g := *f
		g.P.H, g.P.W, g.P.StrideH, g.P.StrideW = oh, ow, 1, 1
		blockedDense(&g, xs, bias, z, y)
		bdGatherPool.Put(buf)
		return
	}
	g := bdGeom{H: p.H, W: p.W, oh: oh, ow: ow, KH: p.KH, KW: p.KW, sH: p.StrideH, sW: p.StrideW,
		dH: p.DilH, dW: p.DilW, pT: p.PadTop, pL: p.PadLeft}
	flat := p.KH == 1 && p.KW == 1 && p.StrideH == 1 && p.StrideW == 1 &&
		p.PadTop == 0 && p.PadLeft == 0 && p.PadBottom == 0 && p.PadRight == 0
	if flat {
		g.H, g.W, g.oh, g.ow = 1, p.H*p.W, 1, oh*ow
	}
	// Groups of output blocks, as equal as four per group allows.
	ngroups := (mb + 3) / 4
	per := (mb + ngroups - 1) / ngroups
	ngroups = (mb + per - 1) / per
	// Bands: enough items for every thread to take several.
	want := 4 * Threads()
	nbands := max(1, min(g.oh, (want+p.N*ngroups-1)/(p.N*ngroups)))
	bandLen := (g.oh + nbands - 1) / nbands
	if flat {
		// Bands of columns, whole segments long.
		nseg := (g.ow + 23) / 24
		nb := max(1, min(nseg, (want+p.N*ngroups-1)/(p.N*ngroups)))
		bandLen = (nseg + nb - 1) / nb * 24
		nbands = (g.ow + bandLen - 1) / bandLen
	} else {
		nbands = (g.oh + bandLen - 1) / bandLen
	}
	lo, hi := actBounds(p)
	dc := bdCalls.Get().(*bdCall)
	*dc = bdCall{f: f, x: x, bias: bias, z: z, y: y, g: g, flat: flat, mb: mb, per: per, ngroups: ngroups,
		nbands: nbands, bandLen: bandLen, lo: lo, hi: hi, asm: bdAsm(), cols: bdCols, stem: -1, fn: dc.fn}
	if dc.asm && f.InNCHW && p.DilW == 1 && bdStems {
		dc.stem = bdStemKind(p.KW, p.StrideW)
	}
	dc.kcb, dc.nchunks = Blocks(p.C), 1
	if gb := per * Blocks(p.C) * p.KH * p.KW * Block * Block * 4; !f.InNCHW && bdChunkBytes > 0 && gb > bdChunkBytes {
		dc.nchunks = (gb + bdChunkBytes - 1) / bdChunkBytes
		dc.kcb = (Blocks(p.C) + dc.nchunks - 1) / dc.nchunks
		dc.nchunks = (Blocks(p.C) + dc.kcb - 1) / dc.kcb
	}
	DynamicFor(p.N*ngroups*nbands, 1, dc.fn)
	*dc = bdCall{fn: dc.fn}
	bdCalls.Put(dc)
}

// bdGather: a strided 1x1 convolution gathers the pixels it reads into a
// compact input, then runs as a flat 1x1 (blockedDense); tests and
// benchmarks turn it off to compare.
var bdGather = true

// bdGatherMax, bdGatherRow: bdGather applies where the gathered input of
// one image is at most bdGatherMax bytes and output rows are shorter than
// bdGatherRow pixels. Measured (BenchmarkBlockedGatherAB): resnet50's 256
// -> 512 /2 at 56 (800 KB, rows of 28) 1.03-1.04 gathered; 512 -> 1024 /2
// at 28 (400 KB, rows of 14) 0.96-1.02 alone and 1.07 in the model; 1024
// -> 2048 /2 at 14 (200 KB, rows of 7) 0.93-0.96.
var (
	bdGatherMax = 512 << 10
	bdGatherRow = 12
)

var bdGatherPool = sync.Pool{New: func() any { return new([]float32) }}

// bdGatherCall is one gather of blockedDense's strided 1x1 path, pooled
// with the function it hands to the pool.
type bdGatherCall struct {
	p     Conv2DParams
	x, xs []float32
	fn    func(lo, hi int)
}

var bdGatherCalls = sync.Pool{New: func() any {
	gc := &bdGatherCall{}
	gc.fn = gc.items
	return gc
}}

// items gathers the (image, input block) items [lo, hi): output pixel
// (r, c) of the block reads input pixel (r*StrideH, c*StrideW).
func (gc *bdGatherCall) items(lo, hi int) {
	p := &gc.p
	oh, ow := p.OutH(), p.OutW()
	for it := lo; it < hi; it++ {
		src := gc.x[it*p.H*p.W*Block : (it+1)*p.H*p.W*Block]
		dst := gc.xs[it*oh*ow*Block : (it+1)*oh*ow*Block]
		for r := 0; r < oh; r++ {
			row := src[r*p.StrideH*p.W*Block:]
			d := dst[r*ow*Block : (r+1)*ow*Block]
			for c := 0; c < ow; c++ {
				*(*[Block]float32)(d[c*Block:]) = *(*[Block]float32)(row[c*p.StrideW*Block:])
			}
		}
	}
}

// bdCols: border columns computed down the column (bdCall.row); tests and
// benchmarks turn it off to compare.
var bdCols = true

// bdStems: NCHW-input segments of one output block with whole tap rows
// run bdStem (each input column broadcast once); tests and benchmarks turn
// it off to compare.
var bdStems = true

// bdGeom is a dense blocked convolution's spatial geometry (for a flat
// 1x1 convolution, the plane as one row).
type bdGeom struct {
	H, W, oh, ow   int
	KH, KW         int
	sH, sW, dH, dW int
	pT, pL         int
}

// bdCall is one blockedDense call, pooled with the function it hands to
// the worker pool (made once per bdCall, so that a call allocates
// nothing).
type bdCall struct {
	f                *BlockedFilter
	x, bias, z, y    []float32
	g                bdGeom
	flat             bool
	mb, per, ngroups int
	nbands, bandLen  int
	lo, hi           float32
	asm              bool
	cols             bool // border columns down the column (bdCols)
	stem             int  // bdStemKind of an NCHW input, -1: none
	kcb, nchunks     int  // input blocks per chunk, chunks (bdChunkBytes)
	fn               func(lo, hi int)
}

// bdChunk is the part of the input blocks a pass over an item's pixels
// reads: blocks [cb0, cb0+n); the first pass adds the bias and z and
// starts from zero, the later ones start from the partial sums in y; only
// the last applies the activation.
type bdChunk struct {
	cb0, n      int
	first, last bool
}

// bdChunkBytes: a group's weights larger than this are read in chunks of
// input blocks (each chunk over all of an item's pixels before the next),
// so that the chunk's weights stay in L2 while every segment of the item
// reads them (resnet50's 3x3 512 -> 512 has 1.2 MB per group of 4 output
// blocks: more than the L2). 0: never.
var bdChunkBytes = 256 << 10

var bdCalls = sync.Pool{New: func() any {
	dc := &bdCall{}
	dc.fn = dc.items
	return dc
}}

// bdArgs is one segment for the kernel: its layout is read by the
// assembly (blockedconv_amd64.s; gen_blockedconv_amd64.go's offsets).
type bdArgs struct {
	x       unsafe.Pointer // input at the segment's first pixel's first tap, block (channel) 0
	w       unsafe.Pointer // weights of the first output block at input block 0 and the first tap
	y       unsafe.Pointer // output of the first output block at the segment's first pixel
	z       unsafe.Pointer // residual at y's offset, or nil
	bias    unsafe.Pointer // 4*Block floats: the output blocks' bias, zero past M
	xPix    int            // bytes between two output pixels' inputs
	xTap    int            // bytes between two taps of a row (dilation)
	xRow    int            // bytes between two rows of taps
	xBlk    int            // bytes from the row after a block's last row of taps to the next block's first
	nblk    int            // input blocks (NCHW: channels); 0: no taps at all
	nkh     int            // rows of taps
	nkw     int            // taps per row
	wOb     int            // bytes between output blocks' weights
	wKhSkip int            // bytes of weights skipped after a row's nkw taps
	wBlk    int            // bytes from the weights after a block's last tap to the next block's first
	yOb     int            // bytes between output blocks of y (and z)
	lo, hi  float32        // activation bounds
	acc     int            // nonzero: the accumulators start from y's values, not zero
	pfyz    int            // nonzero: prefetch y's and z's lines of the next segment
	pfw     uintptr        // nonzero: prefetch 2 lines a tap from here and wOb, 2*wOb, 3*wOb on (bdPf)
}

// bdPf is the weights the next pass (the item's next chunk, or the next
// item's first) reads first, prefetched into L2 by the segments of this
// pass after its first (which reads this pass's weights from memory):
// 2 lines a tap of each of the nb weight streams, from p (a uintptr: it
// may run past the slice, which a prefetch does not mind and the garbage
// collector must not see), left bytes a stream still to go.
type bdPf struct {
	p    uintptr
	left int
	skip bool // the pass's first segment: no prefetch
}

// bdPrefetchW: segments prefetch the next pass's weights (bdPf) where a
// pass's weights are at least bdPfMin bytes; benchmarks turn it off to
// compare.
var bdPrefetchW = true

var bdPfMin = 128 << 10

// bdPfMaxSet: the most bytes of a pass's input and of this pass's and the
// next pass's weights for which bdPf prefetches.
var bdPfMaxSet = 768 << 10

// bdMaxR is the most pixels a segment of nb output blocks has: nb*R
// accumulators, nb weight vectors and a broadcast in 32 registers.
func bdMaxR(nb int) int {
	return [5]int{0, 12, 12, 8, 6}[nb]
}

// bdBalanced: a row's interior pixels (and a column's rows) are cut into
// segments as equal as bdMaxR allows (7 = 4 + 3), not bdMaxR long and a
// remainder (6 + 1); benchmarks turn it off to compare.
var bdBalanced = true

// bdSegLen is the length of segment s of the nseg segments a run of n
// pixels is cut into (bdBalanced), at most maxR.
func bdSegLen(n, nseg, s, maxR int) int {
	if !bdBalanced {
		return min(maxR, n-s*maxR)
	}
	r := n / nseg
	if s < n%nseg {
		r++
	}
	return r
}

// items runs the items [lo, hi): item (n, group, band).
func (dc *bdCall) items(lo, hi int) {
	g := &dc.g
	var scr bdScratch
	for it := lo; it < hi; it++ {
		band := it % dc.nbands
		grp := (it / dc.nbands) % dc.ngroups
		n := it / (dc.nbands * dc.ngroups)
		r0, r1, c0, c1 := 0, 1, 0, g.ow
		if dc.flat {
			c0, c1 = dc.bandRange(band, g.ow, 24)
		} else {
			r0, r1 = dc.bandRange(band, g.oh, 1)
		}
		dc.region(n, grp, band, r0, r1, c0, c1, &scr)
	}
}

// bdEvenBands: an item's band is one of nbands runs of whole units (rows,
// or a flat plane's segments of 24 pixels) as equal as they can be, not
// bandLen long and a remainder (resnet50's 1x1 256 -> 64 at 56x56: 8 bands
// of 7 x 408 + 280 pixels, the thread that takes the last full band ~4%
// late); benchmarks turn it off to compare.
var bdEvenBands = true

// bandRange returns the part [lo, hi) of n (rows, or a flat plane's
// pixels, in units of unit) that band covers.
func (dc *bdCall) bandRange(band, n, unit int) (int, int) {
	if !bdEvenBands {
		return band * dc.bandLen, min(n, (band+1)*dc.bandLen)
	}
	units := (n + unit - 1) / unit
	return band * units / dc.nbands * unit, min(n, (band+1)*units/dc.nbands*unit)
}

// region computes image n's output blocks of group grp over rows [r0, r1)
// and, of the first and last, columns [c0, c1) (a band of rows, or of a
// flat plane's one row).
func (dc *bdCall) region(n, grp, band, r0, r1, c0, c1 int, scr *bdScratch) {
	p := dc.f.P
	mb, g := dc.mb, &dc.g
	var biasv [4 * Block]float32
	{
		ob0 := grp * dc.per
		nb := min(dc.per, mb-ob0)
		if dc.bias != nil {
			copy(biasv[:], dc.bias[ob0*Block:min(p.M, (ob0+nb)*Block)])
		}
		// The rows whose taps' rows are all inside the input get their
		// border columns computed down the column, bdMaxR(nb) rows at a
		// time; the others, and a flat plane, row by row.
		fLo, fHi := g.rowsFull()
		fLo, fHi = max(fLo, r0), min(fHi, r1)
		if dc.flat || !dc.cols || fHi <= fLo {
			fLo, fHi = r1, r1
		}
		for c := 0; c < dc.nchunks; c++ {
			ck := bdChunk{cb0: c * dc.kcb, n: min(dc.kcb, Blocks(p.C)-c*dc.kcb), first: c == 0, last: c == dc.nchunks-1}
			if f := dc.f; f.InNCHW {
				ck.n = p.C
			}
			scr.pf = dc.nextPass(n, grp, band, c)
			// The rows whose taps' rows all lie inside the input first,
			// then their border columns, then the other rows: the chunk's
			// first segment reads its weights from memory, and a long
			// segment of every tap overlaps that with its FMAs, where the
			// first row's 1-pixel corner (4 FMAs per 4 weight vectors)
			// waited on every line (resnet50's 3x3 at 7x7: 29% of the
			// kernel's samples on its 4 corners).
			for i := fLo; i < fHi; i++ {
				dc.row(n, ob0, nb, i, c0, c1, &biasv, -1, scr, ck)
			}
			// down the column in segments as equal as bdMaxR allows
			nseg := (fHi - fLo + bdMaxR(nb) - 1) / bdMaxR(nb)
			for s, i := 0, fLo; s < nseg; s++ {
				rows := bdSegLen(fHi-fLo, nseg, s, bdMaxR(nb))
				dc.row(n, ob0, nb, i, c0, c1, &biasv, rows, scr, ck)
				i += rows
			}
			for i := r0; i < r1; i++ {
				if i < fLo || i >= fHi {
					dc.row(n, ob0, nb, i, c0, c1, &biasv, 0, scr, ck)
				}
			}
		}
		// Pad lanes: the kernel computes them from zero weights, bias
		// and z, and the activation may move them from zero.
		if m := p.M % Block; m != 0 && ob0+nb == mb {
			oh, ow := p.OutH(), p.OutW()
			base := (n*mb + mb - 1) * oh * ow * Block
			for px := r0*g.ow + c0; px < (r1-1)*g.ow+c1; px++ {
				clear(dc.y[base+px*Block+m : base+px*Block+Block])
			}
		}
	}
}

// nextPass returns the prefetch of the weights the pass after chunk c of
// item (n, grp, band) reads: chunk c+1's, or the next item's (the worker
// pool deals each worker a contiguous run of items) first chunk's, where
// that is another group's or another chunk's and a pass's weights are
// bdPfMin bytes or more.
func (dc *bdCall) nextPass(n, grp, band, c int) bdPf {
	p := dc.f.P
	if !bdPrefetchW || !dc.asm || dc.f.InNCHW {
		return bdPf{}
	}
	cb, k := Blocks(p.C), p.KH*p.KW
	wOb := cb * k * Block * Block // floats between output blocks
	var ob0, cb0, n1 int
	switch {
	case c+1 < dc.nchunks:
		ob0, cb0 = grp*dc.per, (c+1)*dc.kcb
	case band+1 < dc.nbands && dc.nchunks == 1:
		return bdPf{} // the same weights, in L2
	case band+1 < dc.nbands:
		ob0 = grp * dc.per
	case grp+1 < dc.ngroups:
		ob0 = (grp + 1) * dc.per
	default:
		return bdPf{} // the next item is another image's: its first group
	}
	n1 = min(dc.kcb, cb-cb0)
	left := 4 * n1 * k * Block * Block // bytes a stream
	// Only where this pass's input and weights and the next pass's fit
	// in L2 beside each other: where they do not (resnet50's 1x1 1024 ->
	// 512 at 14 and the downsample 1024 -> 2048 /2: 800 KB of input and
	// 2 x 256 KiB of weights) the prefetch evicted what the pass still
	// reads (A/B 1.02-1.07); 2048 -> 512 at 7 (200 KB and 2 x 256 KiB)
	// gains (0.87-0.90).
	in := 4 * dc.kcb * dc.g.H * dc.g.W * Block
	if left*dc.per < bdPfMin || in+2*4*dc.kcb*k*Block*Block*dc.per > bdPfMaxSet {
		return bdPf{}
	}
	_ = n
	base := uintptr(unsafe.Pointer(unsafe.SliceData(dc.f.W)))
	return bdPf{p: base + uintptr(4*(ob0*wOb+cb0*k*Block*Block)), left: left, skip: true}
}

// set sets a's weight prefetch for a segment of taps taps (none for the
// pass's first segment, none once the next pass's weights are covered).
func (pf *bdPf) set(a *bdArgs, taps int) {
	a.pfw = 0
	if pf.skip {
		pf.skip = false
		return
	}
	if pf.left <= 0 {
		return
	}
	a.pfw = pf.p
	pf.p += uintptr(128 * taps)
	pf.left -= 128 * taps
}

// row computes output row i, columns [c0, c1), of image n's output blocks
// [ob0, ob0+nb). With rows > 0 it computes only the border columns, of
// the rows [i, i+rows) (rows whose taps' rows all lie inside the input, at
// most bdMaxR(nb)), each column as one segment down the column: the
// kernel writes it to a contiguous scratch (and reads z from one), copied
// to y after, so a border pixel shares its weight loads with rows-1
// others instead of loading every weight vector for one pixel.
//
// ck is the chunk of input blocks this pass reads (bdChunk).
func (dc *bdCall) row(n, ob0, nb, i, c0, c1 int, biasv *[4 * Block]float32, rows int, scr *bdScratch, ck bdChunk) {
	f, g := dc.f, &dc.g
	p := f.P
	k := p.KH * p.KW
	mb := dc.mb
	var a bdArgs
	a.bias = unsafe.Pointer(biasv)
	a.lo, a.hi = dc.lo, dc.hi
	if !ck.first {
		a.bias = unsafe.Pointer(&bdZeroBias)
		a.acc = 1
	}
	if !ck.last {
		a.lo, a.hi = float32(math.Inf(-1)), float32(math.Inf(1))
	}
	// Taps' rows inside the input.
	ih0 := i*g.sH - g.pT
	khLo, khHi := 0, g.KH
	for khLo < khHi && ih0+khLo*g.dH < 0 {
		khLo++
	}
	for khHi > khLo && ih0+(khHi-1)*g.dH >= g.H {
		khHi--
	}
	lanes, tapW := Block, Block*Block
	var xImg, xBlk, nblk int
	if f.InNCHW {
		lanes, tapW = 1, Block
		xBlk, nblk = g.H*g.W, p.C
		xImg = n * p.C * g.H * g.W
		a.wOb = 4 * p.C * k * Block
		a.wBlk = 4 * k * Block
	} else {
		cb := Blocks(p.C)
		xBlk, nblk = g.H*g.W*Block, ck.n
		xImg = (n*cb + ck.cb0) * g.H * g.W * Block
		a.wOb = 4 * cb * k * Block * Block
		a.wBlk = 4 * k * Block * Block
	}
	pixF := lanes // floats per input pixel of one block (channel)
	a.xPix = 4 * g.sW * pixF
	a.xTap = 4 * g.dW * pixF
	a.xRow = 4 * g.dH * g.W * pixF
	a.nkh = khHi - khLo
	a.xBlk = 4*xBlk - a.nkh*a.xRow
	a.wBlk -= a.nkh * 4 * g.KW * tapW
	a.yOb = 4 * g.oh * g.ow * Block
	wOb0 := ob0*a.wOb/4 + ck.cb0*k*tapW
	yRow := ((n*mb+ob0)*g.oh + i) * g.ow * Block
	xp := unsafe.Pointer(unsafe.SliceData(dc.x))
	wp := unsafe.Pointer(unsafe.SliceData(f.W))
	yp := unsafe.Pointer(unsafe.SliceData(dc.y))
	var zp unsafe.Pointer
	if dc.z != nil && ck.first {
		zp = unsafe.Pointer(unsafe.SliceData(dc.z))
	}
	// Interior columns: every tap inside the row.
	jLo := (g.pL + g.sW - 1) / g.sW
	jHi := 0
	if last := g.W - 1 - (g.KW-1)*g.dW + g.pL; last >= 0 {
		jHi = last/g.sW + 1
	}
	jLo, jHi = min(max(jLo, c0), c1), max(min(jHi, c1), c0)
	if jHi < jLo {
		jHi = jLo
	}
	maxR := bdMaxR(nb)
	seg := func(j, r, kwLo, kwHi int) {
		a.nkw = kwHi - kwLo
		a.nblk = nblk
		if a.nkh <= 0 || a.nkw <= 0 {
			a.nblk = 0
		}
		ih := ih0 + khLo*g.dH
		iw := j*g.sW - g.pL + kwLo*g.dW
		a.x, a.w = xp, wp
		if a.nblk > 0 {
			a.x = unsafe.Add(xp, 4*(xImg+(ih*g.W+iw)*pixF))
			a.w = unsafe.Add(wp, 4*(wOb0+(khLo*g.KW+kwLo)*tapW))
		}
		a.wKhSkip = 4 * (g.KW - a.nkw) * tapW
		a.y = unsafe.Add(yp, 4*(yRow+j*Block))
		a.z = nil
		if zp != nil {
			a.z = unsafe.Add(zp, 4*(yRow+j*Block))
		}
		// the next segment's y and z lines, where it is in this row
		a.pfyz = 0
		if bdPrefetchYZ && j+2*r <= c1 {
			a.pfyz = 1
		}
		scr.pf.set(&a, a.nblk*a.nkh*a.nkw)
		switch {
		case dc.stem >= 0 && nb == 1 && a.nkw == g.KW && a.nblk > 0:
			bdStem(&a, r, dc.stem)
		case dc.asm:
			bdKernel(&a, nb, r, lanes)
		default:
			bdKernelGo(&a, nb, r, lanes)
		}
	}
	border := func(j int) {
		iw0 := j*g.sW - g.pL
		kwLo, kwHi := 0, g.KW
		for kwLo < kwHi && iw0+kwLo*g.dW < 0 {
			kwLo++
		}
		for kwHi > kwLo && iw0+(kwHi-1)*g.dW >= g.W {
			kwHi--
		}
		if rows == 0 {
			seg(j, 1, kwLo, kwHi)
			return
		}
		// Down the column: pixels sH input rows apart; y and z through
		// the scratch, [nb][rows][Block].
		ys, zs := &scr.yz[0], &scr.yz[1]
		a.xPix = 4 * g.sH * g.W * pixF
		a.nkw = kwHi - kwLo
		a.nblk = nblk
		a.x, a.w = xp, wp
		if a.nkh > 0 && a.nkw > 0 {
			a.x = unsafe.Add(xp, 4*(xImg+((ih0+khLo*g.dH)*g.W+iw0+kwLo*g.dW)*pixF))
			a.w = unsafe.Add(wp, 4*(wOb0+(khLo*g.KW+kwLo)*tapW))
		} else {
			a.nblk = 0
		}
		a.wKhSkip = 4 * (g.KW - a.nkw) * tapW
		yOb := a.yOb
		a.yOb = 4 * rows * Block
		a.y = unsafe.Pointer(ys)
		a.z = nil
		plane := g.oh * g.ow * Block
		if !ck.first {
			// a later chunk: the partial sums are in y
			for b := 0; b < nb; b++ {
				for px := 0; px < rows; px++ {
					o := yRow + b*plane + px*g.ow*Block + j*Block
					copy(ys[(b*rows+px)*Block:(b*rows+px+1)*Block], dc.y[o:o+Block])
				}
			}
		}
		if zp != nil {
			for b := 0; b < nb; b++ {
				for px := 0; px < rows; px++ {
					o := yRow + b*plane + px*g.ow*Block + j*Block
					copy(zs[(b*rows+px)*Block:(b*rows+px+1)*Block], dc.z[o:o+Block])
				}
			}
			a.z = unsafe.Pointer(zs)
		}
		scr.pf.set(&a, a.nblk*a.nkh*a.nkw)
		if dc.asm {
			bdKernel(&a, nb, rows, lanes)
		} else {
			bdKernelGo(&a, nb, rows, lanes)
		}
		for b := 0; b < nb; b++ {
			for px := 0; px < rows; px++ {
				o := yRow + b*plane + px*g.ow*Block + j*Block
				copy(dc.y[o:o+Block], ys[(b*rows+px)*Block:(b*rows+px+1)*Block])
			}
		}
		a.yOb, a.xPix = yOb, 4*g.sW*pixF
	}
	if rows > 0 {
		// (rows < 0: the interior columns only, below)
		for j := c0; j < jLo; j++ {
			border(j)
		}
		for j := jHi; j < c1; j++ {
			border(j)
		}
		return
	}
	for j := c0; j < jLo && rows == 0; j++ {
		border(j)
	}
	// Segments as equal as maxR allows (bdBalanced).
	nseg := (jHi - jLo + maxR - 1) / maxR
	for s, j := 0, jLo; s < nseg; s++ {
		r := bdSegLen(jHi-jLo, nseg, s, maxR)
		seg(j, r, 0, g.KW)
		j += r
	}
	for j := jHi; j < c1 && rows == 0; j++ {
		border(j)
	}
}

// bdPrefetchYZ: segments prefetch the next segment's y and z lines;
// benchmarks turn it off to compare.
var bdPrefetchYZ = true

// bdZeroBias is the bias of a chunk after the first.
var bdZeroBias [4 * Block]float32

// bdScratch holds a column segment's output and residual, [nb][rows][Block]
// each.
// and the weight prefetch of the pass (bdPf).
type bdScratch struct {
	yz [2][4 * 12 * Block]float32
	pf bdPf
}

// rowsFull returns the output rows whose taps' rows all lie inside the
// input, [lo, hi).
func (g *bdGeom) rowsFull() (lo, hi int) {
	lo = (g.pT + g.sH - 1) / g.sH
	if last := g.H - 1 - (g.KH-1)*g.dH + g.pT; last >= 0 {
		hi = last/g.sH + 1
	}
	hi = min(hi, g.oh)
	return lo, max(lo, hi)
}

// bdKernelGo is the segment kernel in Go: r pixels of nb output blocks;
// lanes is Block for a blocked input, 1 for an NCHW one.
func bdKernelGo(a *bdArgs, nb, r, lanes int) {
	var acc [4][12][Block]float32
	if a.acc != 0 {
		for b := 0; b < nb; b++ {
			for px := 0; px < r; px++ {
				acc[b][px] = *(*[Block]float32)(unsafe.Add(a.y, b*a.yOb+px*4*Block))
			}
		}
	}
	tapB := 4 * lanes * Block // bytes of weights per tap
	xr, wt := 0, 0
	// Offsets, not pointers, walk the taps: a pointer past the end of
	// x or w, even unused, is invalid to the garbage collector.
	for ib := 0; ib < a.nblk; ib++ {
		for kh := 0; kh < a.nkh; kh++ {
			xt := xr
			for kw := 0; kw < a.nkw; kw++ {
				for il := 0; il < lanes; il++ {
					for b := 0; b < nb; b++ {
						wv := (*[Block]float32)(unsafe.Add(a.w, wt+b*a.wOb+il*4*Block))
						for px := 0; px < r; px++ {
							xs := *(*float32)(unsafe.Add(a.x, xt+px*a.xPix+il*4))
							ac := &acc[b][px]
							for l := range ac {
								ac[l] += xs * wv[l]
							}
						}
					}
				}
				xt += a.xTap
				wt += tapB
			}
			xr += a.xRow
			wt += a.wKhSkip
		}
		xr += a.xBlk
		wt += a.wBlk
	}
	bv := (*[4 * Block]float32)(a.bias)
	for b := 0; b < nb; b++ {
		for px := 0; px < r; px++ {
			off := b*a.yOb + px*4*Block
			yv := (*[Block]float32)(unsafe.Add(a.y, off))
			var zv *[Block]float32
			if a.z != nil {
				zv = (*[Block]float32)(unsafe.Add(a.z, off))
			}
			for l := 0; l < Block; l++ {
				v := acc[b][px][l] + bv[b*Block+l]
				if zv != nil {
					v += zv[l]
				}
				yv[l] = min(max(v, a.lo), a.hi)
			}
		}
	}
}
