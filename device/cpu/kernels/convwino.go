package kernels

import (
	"math"
	"sync"

	"github.com/kilnai/kiln/device/cpu"
)

// The Winograd convolution F(4x4, 3x3) ("winograd4x4-direct" tactic of
// FusedConv) for 3x3 stride-1 float32 convolutions (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2015): every 6x6 input
// window d, 4 apart, becomes V = Bt d B, every filter U = G g Gt (once, when
// the plan sets the tactic); for each of the 36 transform positions xi the
// products over the input channels are one matrix product M[xi] = U[xi]
// V[xi]; each output tile is At M A. That is 36 multiplications for 16
// outputs where the direct convolution does 144.
//
// The tiles are the vector lanes of the transforms, as in device/cpu's
// Winograd; what differs is where the time goes:
//
//   - per input channel one pass writes the zero-padded plane split into its
//     four column phases (winoPadDeint), so that element j of every tile of
//     a tile row is a contiguous run; then per tile row Bt runs down the six
//     phase rows into a scratch row that stays in L1 and across it, with
//     whole vectors, straight into V[xi][c][tile] (winoInRows);
//   - the 36 products run on the direct convolution's register-tiled kernel
//     (convDirectTile: 8 output channels x 48 tiles, the input channels as
//     its taps at offsets c*ld) or, for planes of few tiles, on the
//     channels-as-lanes one (convCLTile, tactic "winograd4x4-cl"), with U
//     packed for it once;
//   - per output channel and tile row At runs across and down the products
//     and the four columns of each tile are interleaved into the output rows
//     with the bias and ReLU/clip (winoOutRows); SiLU alone runs per output
//     plane, the residual and other activations as the direct convolution
//     applies them (directFinish).
//
// Large planes run in bands of tile rows, one goroutine per band with its
// V and M in L2 (winoBands); the others in three image-wide phases, each
// split over the goroutines.

// winoTactic names the Winograd convolution (convWino).
const winoTactic = "winograd4x4-direct"

// winoFilter is the weights of a 3x3 convolution transformed and packed
// for convWino: for each transform position xi and block of 8 output
// channels, c rows of 8 values (output channel minor), rows past m zero;
// with cl (tactic "winograd4x4-cl"), blocks of 64 output channels for
// convCLTile, the output channels as the lanes of the products.
type winoFilter struct {
	m, c, mb int
	u        []float32
	cl       bool
	masks    [][4]uint16 // cl: the lanes of each block that are channels
}

// winoClTactic names the Winograd convolution whose products run on the
// channels-as-lanes kernel (convCLTile): for small planes, where the tiles
// do not fill 16 lanes.
const winoClTactic = "winograd4x4-cl"

// newWinoFilter transforms w [m, c, 3, 3] (U = G g Gt, in float64) and
// packs it for the products' kernel (cl: convCLTile, else convDirectTile).
func newWinoFilter(w []float32, m, c int, cl bool) *winoFilter {
	nr := directMR
	if cl {
		nr = clNV
	}
	mb := (m + nr - 1) / nr
	f := &winoFilter{m: m, c: c, mb: mb, u: make([]float32, 36*mb*c*nr), cl: cl}
	if cl {
		f.masks = make([][4]uint16, mb)
		for o := 0; o < m; o++ {
			f.masks[o/clNV][o%clNV/16] |= 1 << (o % 16)
		}
	}
	g1 := func(a, b, c float64) [6]float64 {
		return [6]float64{a / 4, -(a + b + c) / 6, -(a - b + c) / 6, a/24 + b/12 + c/6, a/24 - b/12 + c/6, c}
	}
	for o := 0; o < m; o++ {
		for ci := 0; ci < c; ci++ {
			g := w[(o*c+ci)*9 : (o*c+ci)*9+9]
			var t [3][6]float64 // t[j] = G (column j of g)
			for j := 0; j < 3; j++ {
				t[j] = g1(float64(g[j]), float64(g[3+j]), float64(g[6+j]))
			}
			for i := 0; i < 6; i++ {
				u := g1(t[0][i], t[1][i], t[2][i]) // row i of (G g) Gt
				for j := 0; j < 6; j++ {
					xi := i*6 + j
					f.u[((xi*mb+o/nr)*c+ci)*nr+o%nr] = float32(u[j])
				}
			}
		}
	}
	return f
}

// productItems is how many calls of its kernel the products of tiles
// tiles take (see products).
func (f *winoFilter) productItems(tiles int) int {
	if f.cl {
		return 36 * ((tiles + 5) / 6) * f.mb
	}
	return 36 * ((tiles + directNR - 1) / directNR) * f.mb
}

// products computes items [i0, i1) of M[xi] = U[xi] V[xi] for tiles tiles
// (V: 36 planes of vp floats, rows of ld a channel; M: planes of mp, rows
// of ld an output channel; offs[c] = c*ld): per item one product position,
// one block of output channels, and up to 48 tiles (convDirectTile) or 6
// (convCLTile, with cl).
func (f *winoFilter) products(c, tiles, ld, vp, mp int, v, mm []float32, offs []int32, i0, i1 int) {
	if f.cl {
		var zero [clNV]float32
		var pos [6]int32
		groups := (tiles + 5) / 6
		k := c * clNV
		for it := i0; it < i1; it++ {
			b, gi, xi := it%f.mb, it/f.mb%groups, it/(f.mb*groups)
			cnt := min(6, tiles-6*gi)
			for j := range pos {
				pos[j] = int32(6*gi + min(j, cnt-1))
			}
			convCLTile(c, f.u[(xi*f.mb+b)*k:][:k], v[xi*vp:][:c*ld], offs, &pos, mm[xi*mp+b*clNV*ld:], &pos, ld,
				zero[:], 0, 0, false, &f.masks[b], cnt)
		}
		return
	}
	var zero [directMR]float32
	jc := (tiles + directNR - 1) / directNR
	k := c * directMR
	for it := i0; it < i1; it++ {
		b, j, xi := it%f.mb, it/f.mb%jc, it/(f.mb*jc)
		j0 := j * directNR
		convDirectTile(c, f.u[(xi*f.mb+b)*k:][:k], v[xi*vp:][:c*ld], offs, j0,
			mm[xi*mp+b*directMR*ld+j0:], ld, &zero[0], 0, 0, false, min(directNR, tiles-j0), min(directMR, f.m-b*directMR), nil)
	}
}

// fits reports whether f holds the weights of p.
func (f *winoFilter) fits(p cpu.Conv2DParams) bool {
	return f != nil && f.m == p.M && f.c == p.C && p.KH == 3 && p.KW == 3
}

// winoApplies reports whether convWino computes p: a 3x3 kernel, stride
// and dilation 1, one group, on a CPU with AVX-512, and sizes whose
// offsets fit the kernel's int32 offsets.
func winoApplies(p cpu.Conv2DParams) bool {
	if !directAsm || p.Validate() != nil || p.Group != 1 || p.KH != 3 || p.KW != 3 ||
		p.StrideH != 1 || p.StrideW != 1 || p.DilH != 1 || p.DilW != 1 || p.C < 2 {
		return false
	}
	g := winoGeom(p)
	return int64(36)*int64(max(g.vp, g.mp)) < math.MaxInt32
}

// winoClOffered reports whether FusedConv offers winograd4x4-cl for p (which
// winoApplies to): 32 output channels or more, and transformed weights (36
// x C x M floats) of at most 1 MiB. Larger ones are read from L2 or L3 once
// per group of 6 tiles: measured with the same weights run after run (as
// the tactic timer runs them) they lost already (resnet_mini's 128 ch at 7x7,
// 2.4 MB: 205 us against direct-cl's 114; squeezenet1_1's 48 -> 192 at
// 13x13, 1.3 MB: 308 against 219; section 15b), and with the weights cold
// as in a model the timer's ranking turns (resnet50's 256 ch at 14x14, 9.4
// MB: 1566-1638 us warm, the fastest but one; 2716-2740 cold, 35% behind
// direct-cl; section 24).
func winoClOffered(p cpu.Conv2DParams) bool {
	return p.M >= 32 && int64(36)*int64(p.C)*int64(p.M)*4 <= 1<<20
}

// winoGeometry is the tiling of one convolution.
type winoGeometry struct {
	th, tw, tiles int
	// ld: floats per row of V and M (all tiles, padded, plus the spill of
	// the whole-vector transforms); lt: per row of a tile row's
	// intermediates; lp: per phase row of the padded input (wp = 4 lp
	// floats per padded row, hp rows).
	ld, lt, lp, wp, hp int
	// vp, mp: floats per transform position of V (C rows of ld) and of M
	// (Mpad rows), padded by 3 cache lines so that the 36 rows of one
	// channel or tile fall on different cache sets (unpadded, C*ld*4 bytes
	// is often a multiple of 4 KiB).
	vp, mp int
}

func winoGeom(p cpu.Conv2DParams) winoGeometry { return winoGeomRows(p, (p.OutH()+3)/4) }

// winoGeomRows is the geometry of a band of rows tile rows of p.
func winoGeomRows(p cpu.Conv2DParams, rows int) winoGeometry {
	var g winoGeometry
	g.th, g.tw = rows, (p.OutW()+3)/4
	g.tiles = g.th * g.tw
	g.ld = (g.tiles+15)/16*16 + 16
	g.lt = (g.tw + 15) / 16 * 16
	// Tile u reads phases at u and u+1 < lp; the whole vectors of the pass
	// across read up to lt floats from u = 1, into the next phase row or
	// (the last) the next row: those lanes are past tw, never used.
	g.lp = (g.tw + 16) / 16 * 16
	g.wp = 4 * g.lp
	g.hp = 4*g.th + 2
	g.vp = p.C*g.ld + 48
	g.mp = g.mpad(p.M)*g.ld + 48
	return g
}

func (g winoGeometry) mpad(m int) int { return (m + directMR - 1) / directMR * directMR }

var (
	winoVPool   directPool[float32] // V: 36 x C x ld
	winoMPool   directPool[float32] // M: 36 x Mpad x ld
	winoInPool  directPool[float32] // per goroutine: padded plane, phases, Bt rows
	winoOutPool directPool[float32] // per goroutine: At rows, a last tile row
	winoOffPool directPool[int32]
)

// convWino computes y = act(conv(x, w) + bias) with the transformed filter
// f, or with ep, y = ep(conv(x, w) + bias + z) (see convDirect).
func convWino(p cpu.Conv2DParams, x []float32, f *winoFilter, bias, y, z []float32, ep *epilogue) {
	scratchAdd(int64(len(f.u)) * 4) // the packed filter, held for as long as the plan
	if ep != nil {
		p.Act = cpu.ActNone
	} else {
		z = nil
	}
	g := winoGeom(p)
	oh, ow := p.OutH(), p.OutW()
	// Every output tile is written in place: rows of ow floats, the last
	// tile column under a mask, a last tile row past the output through a
	// scratch (winoOutChannel).
	plane := oh * ow
	lo, hi, clampOn := float32(math.Inf(-1)), float32(math.Inf(1)), false
	switch p.Act {
	case cpu.ActRelu:
		lo, clampOn = 0, true
	case cpu.ActClip:
		lo, hi, clampOn = p.ActMin, p.ActMax, true
	}
	bandRows := winoBandRows(p, g)
	var v, mm []float32
	var offs []int32
	if bandRows == 0 {
		vBuf := winoVPool.get(36 * g.vp)
		mBuf := winoMPool.get(36 * g.mp)
		offBuf := winoOffPool.get(p.C)
		defer func() {
			winoVPool.put(vBuf)
			winoMPool.put(mBuf)
			winoOffPool.put(offBuf)
		}()
		v, mm, offs = *vBuf, *mBuf, *offBuf
		for c := range offs {
			offs[c] = int32(c * g.ld)
		}
	}
	// SiLU without a residual runs on each output plane while it is in
	// cache (as the direct convolution's tiles do).
	silu := ep != nil && ep.act == actSiLU && z == nil
	epn := ep
	if silu {
		epn = nil
	}
	for n := 0; n < p.N; n++ {
		xn := x[n*p.C*p.H*p.W : (n+1)*p.C*p.H*p.W]
		yn := y[n*p.M*oh*ow : (n+1)*p.M*oh*ow]
		out := yn
		var zn []float32
		if z != nil {
			zn = z[n*p.M*oh*ow : (n+1)*p.M*oh*ow]
		}
		if bandRows > 0 {
			winoBands(p, g, bandRows, xn, f, bias, out, lo, hi, clampOn, silu)
			if epn != nil {
				directFinish(p, yn, zn, epn, out, false, plane, ow)
			}
			continue
		}
		winoInput(p, g, xn, v)
		items := f.productItems(g.tiles)
		wc := winoCalls.Get().(*winoCall)
		wc.set(winoCall{p: p, g: g, f: f, v: v, mm: mm, offs: offs})
		dynamicFor(items, max(1, items/(8*cpu.Threads())), wc.prodFn)
		wc.done()
		winoOutput(p, g, mm, bias, out, lo, hi, clampOn, silu)
		if epn != nil {
			directFinish(p, yn, zn, epn, out, false, plane, ow)
		}
	}
}

// winoOutChannel writes th tile rows of one output channel (see
// winoOutRows) into out, rows of ow floats (ow > 4*tw - 4: the last tile
// column under the kernel's mask), rows of them (<= 4*th): when the last
// tile row has fewer than 4 rows, that tile row goes through last (4*ow
// floats) and its rows are copied.
func winoOutChannel(mm []float32, mp, lt, th int, s, o, out []float32, ow, tw, rows int, last []float32, bias, lo, hi float32, clampOn bool) {
	full := th
	if rows < 4*th {
		full--
	}
	winoOutRows(mm, mp, lt, full, s, o, out, ow, tw, bias, lo, hi, clampOn)
	if full < th {
		winoOutRows(mm[full*tw:], mp, lt, 1, s, o, last, ow, tw, bias, lo, hi, clampOn)
		copy(out[4*full*ow:rows*ow], last)
	}
}

// winoBandRows returns how many tile rows a band of convWino's band mode
// gets, or 0 for the image-wide phases: bands of at least 40 tiles (the
// products' kernel is 48 tiles wide), at least two per goroutine, V and M
// of a band within 1 MiB together (they stay in L2; the earlier limit of
// 512 KiB for the larger of the two left squeezenet1_1's 16 -> 64 layer at
// 55x55, 2 MB of M, image-wide: 249-281 -> 216-234 us of CPU with bands of
// 4 tile rows, NOTES.md section 18).
func winoBandRows(p cpu.Conv2DParams, g winoGeometry) int {
	switch winoMode {
	case winoImage:
		return 0
	case winoBandsOf2:
		return min(2, g.th)
	}
	rows := min((48+g.tw-1)/g.tw, g.th/(2*cpu.Threads()))
	for rows > 1 && 36*4*(p.C+g.mpad(p.M))*(rows*g.tw+32) > 1<<20 {
		rows--
	}
	if rows < 1 || rows*g.tw < 40 {
		return 0
	}
	return rows
}

// winoMode overrides, for tests, how convWino splits its work: winoAuto by
// winoBandRows, winoImage (the image-wide phases), winoBandsOf2 (bands of
// two tile rows).
var winoMode = winoAuto

const (
	winoAuto = iota
	winoImage
	winoBandsOf2
)

// winoBands computes one image in bands of rows tile rows, each band's
// input transform, products and output transform on one goroutine with
// its V and M in cache, the bands spread over the goroutines.
func winoBands(p cpu.Conv2DParams, g winoGeometry, rows int, x []float32, f *winoFilter, bias, out []float32,
	lo, hi float32, clampOn, silu bool) {
	bands := (g.th + rows - 1) / rows
	wc := winoCalls.Get().(*winoCall)
	wc.set(winoCall{p: p, g: g, rows: rows, x: x, f: f, bias: bias, out: out, lo: lo, hi: hi, clampOn: clampOn, silu: silu})
	dynamicFor(bands, 1, wc.bandFn)
	wc.done()
}

// winoCall is the state of one of convWino's parallel phases, pooled with
// the functions it hands to the worker pool (made once per winoCall, so
// that a call allocates nothing).
type winoCall struct {
	p                   cpu.Conv2DParams
	g                   winoGeometry
	rows                int
	f                   *winoFilter
	x, v, mm, bias, out []float32
	z                   []float32 // blockedwino.go: the residual, blocked
	offs                []int32
	lo, hi              float32
	clampOn, silu       bool
	inFn, prodFn, outFn func(lo, hi int)
	bandFn              func(lo, hi int)
	inBFn, outBFn       func(lo, hi int) // blockedwino.go's phases
	bandBFn             func(lo, hi int) // and bands
}

var winoCalls = sync.Pool{New: func() any {
	wc := &winoCall{}
	wc.inFn, wc.prodFn, wc.outFn, wc.bandFn = wc.input, wc.products, wc.output, wc.bands
	wc.inBFn, wc.outBFn, wc.bandBFn = wc.inputBlocked, wc.outputBlocked, wc.bandsBlocked
	return wc
}}

// set makes wc's state c, keeping wc's functions.
func (wc *winoCall) set(c winoCall) {
	c.inFn, c.prodFn, c.outFn, c.bandFn = wc.inFn, wc.prodFn, wc.outFn, wc.bandFn
	c.inBFn, c.outBFn, c.bandBFn = wc.inBFn, wc.outBFn, wc.bandBFn
	*wc = c
}

// done drops the references to the caller's memory and puts wc back.
func (wc *winoCall) done() {
	wc.set(winoCall{})
	winoCalls.Put(wc)
}

// products computes the product items [i0, i1).
func (wc *winoCall) products(i0, i1 int) {
	g := &wc.g
	wc.f.products(wc.p.C, g.tiles, g.ld, g.vp, g.mp, wc.v, wc.mm, wc.offs, i0, i1)
}

// bands computes the bands [b0, b1) of winoBands.
func (wc *winoCall) bands(b0, b1 int) {
	p, g, rows, x, f, bias, out := &wc.p, &wc.g, wc.rows, wc.x, wc.f, wc.bias, wc.out
	lo, hi, clampOn, silu := wc.lo, wc.hi, wc.clampOn, wc.silu
	oh, ow := p.OutH(), p.OutW()
	gb := winoGeomRows(*p, rows)
	{
		vBuf := winoVPool.get(36 * gb.vp)
		mBuf := winoMPool.get(36 * gb.mp)
		inBuf := winoInPool.get(gb.hp*gb.wp + 6*gb.wp + 16)
		outBuf := winoOutPool.get(40*gb.lt + 4*ow)
		offBuf := winoOffPool.get(p.C)
		defer func() {
			winoVPool.put(vBuf)
			winoMPool.put(mBuf)
			winoInPool.put(inBuf)
			winoOutPool.put(outBuf)
			winoOffPool.put(offBuf)
		}()
		v, mm, offs := *vBuf, *mBuf, *offBuf
		ph, t := (*inBuf)[:gb.hp*gb.wp], (*inBuf)[gb.hp*gb.wp:]
		s, o, last := (*outBuf)[:24*gb.lt], (*outBuf)[24*gb.lt:40*gb.lt], (*outBuf)[40*gb.lt:]
		var pm winoPadMasks
		for band := b0; band < b1; band++ {
			ty0 := band * rows
			gr := winoGeomRows(*p, min(rows, g.th-ty0))
			for c := 0; c < p.C; c++ {
				// padded rows 4ty0... of the image
				winoPadDeint(x[c*p.H*p.W:(c+1)*p.H*p.W], p.H, p.W, p.PadTop-4*ty0, p.PadLeft, gr.hp, gr.lp, ph, &pm)
				winoInRows(ph, gr.wp, gr.th, t, v[c*gr.ld:], gr.vp, gr.tw, gr.lp, gr.lt)
				offs[c] = int32(c * gr.ld)
			}
			f.products(p.C, gr.tiles, gr.ld, gr.vp, gr.mp, v, mm, offs, 0, f.productItems(gr.tiles))
			for m := 0; m < p.M; m++ {
				var b float32
				if bias != nil {
					b = bias[m]
				}
				n := min(4*gr.th, oh-4*ty0) // output rows of the band
				om := out[(m*oh+4*ty0)*ow : (m*oh+4*ty0+n)*ow]
				winoOutChannel(mm[m*gr.ld:], gr.mp, gr.lt, gr.th, s, o, om, ow, gr.tw, n, last, b, lo, hi, clampOn)
				if silu {
					convSiLU(om, om)
				}
			}
		}
	}
}

// winoInput writes V[xi][c][tile] = (Bt d B)[xi] for every input channel c
// and tile of one image x.
func winoInput(p cpu.Conv2DParams, g winoGeometry, x, v []float32) {
	wc := winoCalls.Get().(*winoCall)
	wc.set(winoCall{p: p, g: g, x: x, v: v})
	dynamicFor(p.C, max(1, p.C/(4*cpu.Threads())), wc.inFn)
	wc.done()
}

// input transforms the input channels [c0, c1) of winoInput.
func (wc *winoCall) input(c0, c1 int) {
	p, g, x, v := &wc.p, &wc.g, wc.x, wc.v
	per := g.hp*g.wp + 6*g.wp + 16
	{
		buf := winoInPool.get(per)
		defer winoInPool.put(buf)
		ph := (*buf)[:g.hp*g.wp]
		t := (*buf)[g.hp*g.wp:] // t[r][q][u]: r*wp + q*lp + u, one tile row
		var pm winoPadMasks
		for c := c0; c < c1; c++ {
			// column 4u+q of padded row y goes to ph[y*wp + q*lp + u]
			winoPadDeint(x[c*p.H*p.W:(c+1)*p.H*p.W], p.H, p.W, p.PadTop, p.PadLeft, g.hp, g.lp, ph, &pm)
			// per tile row: down, all four phases at once (t[r] = sum over
			// i of Bt[r][i] ph[4ty+i]), then across each t[r]: element j of
			// the tile at u is phase j%4 at u+j/4; tile row ty goes to
			// tiles ty*tw...
			winoInRows(ph, g.wp, g.th, t, v[c*g.ld:], g.vp, g.tw, g.lp, g.lt)
		}
	}
}

// winoOutput writes, for every output channel, its tiles At M A + bias
// (clamped to [lo, hi] with clampOn, then SiLU with silu) into out, the
// NCHW output of one image.
func winoOutput(p cpu.Conv2DParams, g winoGeometry, mm, bias, out []float32, lo, hi float32, clampOn, silu bool) {
	wc := winoCalls.Get().(*winoCall)
	wc.set(winoCall{p: p, g: g, mm: mm, bias: bias, out: out, lo: lo, hi: hi, clampOn: clampOn, silu: silu})
	dynamicFor(p.M, max(1, p.M/(4*cpu.Threads())), wc.outFn)
	wc.done()
}

// output transforms the output channels [m0, m1) of winoOutput.
func (wc *winoCall) output(m0, m1 int) {
	p, g, mm, bias, out := &wc.p, &wc.g, wc.mm, wc.bias, wc.out
	lo, hi, clampOn, silu := wc.lo, wc.hi, wc.clampOn, wc.silu
	oh, ow := p.OutH(), p.OutW()
	plane := oh * ow
	{
		buf := winoOutPool.get(40*g.lt + 4*ow)
		defer winoOutPool.put(buf)
		s := (*buf)[:24*g.lt]          // s[r][q]: across row r of M, one tile row
		o := (*buf)[24*g.lt : 40*g.lt] // o[i][q]: down, output row i, column q
		last := (*buf)[40*g.lt:]       // a last tile row past the output
		for m := m0; m < m1; m++ {
			var b float32
			if bias != nil {
				b = bias[m]
			}
			pl := out[m*plane : (m+1)*plane]
			winoOutChannel(mm[m*g.ld:], g.mp, g.lt, g.th, s, o, pl, ow, g.tw, oh, last, b, lo, hi, clampOn)
			if silu {
				convSiLU(pl, pl)
			}
		}
	}
}

// winoPadMasks are the load masks of winoPadDeint for one row geometry:
// lane l of vector i (16 floats) reads column 16i + l - left of a row of w
// floats when that is inside the row.
type winoPadMasks struct {
	w, left, nb int
	m           [128]uint16
}

// set makes the masks of rows of w floats at column left, nb blocks of 64,
// unless they are made already; false when there are more than 32 blocks.
func (pm *winoPadMasks) set(w, left, nb int) bool {
	if nb > len(pm.m)/4 || nb <= 0 {
		return false
	}
	if pm.nb == nb && pm.w == w && pm.left == left {
		return true
	}
	pm.w, pm.left, pm.nb = w, left, nb
	for i := range pm.m[:4*nb] {
		var m uint16
		for l := 0; l < 16; l++ {
			if c := 16*i + l - left; c >= 0 && c < w {
				m |= 1 << l
			}
		}
		pm.m[i] = m
	}
	return true
}

// winoPadDeintGo is winoPadDeint in Go.
func winoPadDeintGo(x []float32, h, w, padTop, padLeft, hp, lp int, dst []float32) {
	wp := 4 * lp
	for y := 0; y < hp; y++ {
		r := y - padTop
		for j := 0; j < wp; j++ {
			var v float32
			if c := j - padLeft; r >= 0 && r < h && c >= 0 && c < w {
				v = x[r*w+c]
			}
			dst[y*wp+(j%4)*lp+j/4] = v
		}
	}
}

// The transforms in Go: what the AVX-512 kernels compute (strides and
// offsets in floats).

// winoOutRowsGo is winoOutRows in Go.
func winoOutRowsGo(mm []float32, mp, lt, th int, s, o, out []float32, wq, tw int, bias, lo, hi float32, clamp bool) {
	nb := (tw + 15) / 16
	for ty := 0; ty < th; ty++ {
		for r := 0; r < 6; r++ {
			var across [6]int
			for j := range across {
				across[j] = (r*6+j)*mp + ty*tw
			}
			winoAtGo(lt, 1, mm, &across, 0, s[r*4*lt:], lt, 0)
		}
		for q := 0; q < 4; q++ {
			var down [6]int
			for r := range down {
				down[r] = (r*4 + q) * lt
			}
			winoAtGo(lt, 1, s, &down, 0, o[q*lt:], 4*lt, 0)
		}
		winoInt4Go(o, lt, nb, out[4*ty*wq:], bias, lo, hi, clamp, wq, 4, 4*lt, wq)
	}
}

// winoInRowsGo is winoInRows in Go.
func winoInRowsGo(ph []float32, wp, th int, t, v []float32, vp, tw, lp, lt int) {
	down := [6]int{0, wp, 2 * wp, 3 * wp, 4 * wp, 5 * wp}
	for ty := 0; ty < th; ty++ {
		winoBtGo(wp, 1, ph[4*ty*wp:], &down, 0, t, wp, 0)
		for r := 0; r < 6; r++ {
			o := r * wp
			across := [6]int{o, o + lp, o + 2*lp, o + 3*lp, o + 1, o + lp + 1}
			winoBtGo(lt, 1, t, &across, 0, v[r*6*vp+ty*tw:], vp, 0)
		}
	}
}

// winoBtGo sets dst[o*do+r*ds+i] = (Bt x)[r], x[k] = src[o*so+offs[k]+i].
func winoBtGo(n, count int, src []float32, offs *[6]int, so int, dst []float32, ds, do int) {
	for o := 0; o < count; o++ {
		s, d := src[o*so:], dst[o*do:]
		for i := 0; i < n; i++ {
			x0, x1, x2, x3, x4, x5 := s[offs[0]+i], s[offs[1]+i], s[offs[2]+i], s[offs[3]+i], s[offs[4]+i], s[offs[5]+i]
			d[i] = 4*x0 - 5*x2 + x4
			d[ds+i] = (x3 + x4) - 4*(x1+x2)
			d[2*ds+i] = (x4 - x3) + 4*(x1-x2)
			d[3*ds+i] = (x4 - x2) + 2*(x3-x1)
			d[4*ds+i] = (x4 - x2) - 2*(x3-x1)
			d[5*ds+i] = 4*x1 - 5*x3 + x5
		}
	}
}

// winoAtGo sets dst[o*do+r*ds+i] = (At x)[r] for r < 4.
func winoAtGo(n, count int, src []float32, offs *[6]int, so int, dst []float32, ds, do int) {
	for o := 0; o < count; o++ {
		s, d := src[o*so:], dst[o*do:]
		for i := 0; i < n; i++ {
			x0, x1, x2, x3, x4, x5 := s[offs[0]+i], s[offs[1]+i], s[offs[2]+i], s[offs[3]+i], s[offs[4]+i], s[offs[5]+i]
			a, b, c, e := x1+x2, x1-x2, x3+x4, x3-x4
			d[i] = x0 + a + c
			d[ds+i] = b + 2*e
			d[2*ds+i] = a + 4*c
			d[3*ds+i] = b + 8*e + x5
		}
	}
}

// winoInt4Go sets dst[o*do+k] = clamp(src[o*so+(k%4)*ls+k/4] + bias) for
// the first valid outputs k of each o (k < 64n).
func winoInt4Go(src []float32, ls, n int, dst []float32, bias, lo, hi float32, clamp bool, valid, count, so, do int) {
	for o := 0; o < count; o++ {
		for k := 0; k < min(valid, 64*n); k++ {
			v := src[o*so+(k%4)*ls+k/4] + bias
			if clamp {
				v = min(max(v, lo), hi)
			}
			dst[o*do+k] = v
		}
	}
}
