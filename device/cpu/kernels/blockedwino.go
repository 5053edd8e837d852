package kernels

import (
	"math"

	"github.com/kilnai/kiln/device/cpu"
)

// BlockedConv's Winograd tactic: the blocked input reordered to NCHW
// (cpu.FromBlocked), FusedConv's Winograd convolution F(4x4, 3x3)
// (convWino: 36 multiplications for 16 outputs where the blocked direct
// kernel does 144), and its NCHW output reordered back (cpu.ToBlocked, pad
// lanes zero). The blocked direct kernel runs near the machine's peak on
// resnet50's 3x3 layers (184-201 GFLOP/cpu-s), so only fewer
// multiplications make them faster: with the two reorders inside the op,
// the layers stay blocked in the graph and the tactic timer chooses per
// layer (NOTES-blocked.md, "Winograd for blocked 3x3 layers").

// blockedWinoTactic names the tactic; blockedDirectTactic the blocked
// direct kernel (cpu.BlockedConv2D, the default).
const (
	blockedWinoTactic   = "winograd4x4-reorder"
	blockedDirectTactic = "blocked-direct"
)

// blockedWinoMaxFilter is the largest transformed filter (36 x C x M
// floats, 4x the weights) the tactic is offered with. At batch 1 a model
// reads every layer's weights from memory once a run; the tactic timer
// times a layer with its weights cold as well, so the cap only keeps the
// build from transforming (and holding) filters far too large to win:
// resnet50's 512-channel 3x3 layers at 7x7 (38 MB, four tiles a plane).
// Measured with cold weights (BenchmarkBlockedWinoAB): 0.84-0.93 of the
// direct kernel's time on resnet50's layers of 0.6, 2.4 and 9.4 MB.
const blockedWinoMaxFilter = 16 << 20

// blockedWinoOffered reports whether BlockedConv offers the Winograd
// tactic for p: a blocked input (not input_nchw), a 3x3 stride-1 dense
// convolution convWino computes, and a transformed filter of at most
// blockedWinoMaxFilter bytes; with a residual or not.
func blockedWinoOffered(p cpu.Conv2DParams, inNCHW, residual bool) bool {
	return !inNCHW && winoApplies(p) && int64(36)*int64(p.C)*int64(p.M)*4 <= blockedWinoMaxFilter
}

var (
	blockedWinoIn  directPool[float32] // the input, NCHW (bands: the reorder path)
	blockedWinoOut directPool[float32] // the output, NCHW (bands: the reorder path)
	// one channel block as 16 planes, per goroutine (the blocked path)
	blockedWinoPlanes directPool[float32]
	// one output block, blocked, before the residual is added
	blockedWinoSum directPool[float32]
)

// blockedWinoReorder makes blockedWino reorder the whole input and output
// (the first form of the tactic) where it would read and write the blocked
// layout in its transforms (benchmarks compare the two).
var blockedWinoReorder bool

// blockedWino computes the blocked y = act(conv(x, w) + bias [+ z]) of
// the blocked x with f, the transformed weights (p.Act: actNone, actRelu or
// actClip), and the blocked residual z where it is not nil. y may be x or
// z.
//
// The transforms read and write the blocked layout themselves: the input
// transform takes one channel block at a time, transposed into 16 planes
// in a per-goroutine scratch (cpu.FromBlockedBlock) from which
// winoPadDeint reads each plane, and the output transform writes one
// block's 16 planes into the scratch and transposes them into y
// (cpu.ToBlockedBlock; with z into a second scratch, then act(sum + z)
// into y by addClamp): no NCHW copy of the input or output goes through
// memory. In convWino's image-wide phases (every plane of resnet50's 3x3
// layers at batch 1) the input phase ends before the output phase starts;
// in its bands (large planes of few channels: resnet_mini's 56x56) a band
// reads the input rows of the next, so where y is x the whole input and
// output are reordered around convWino instead (blockedWinoReordered).
func blockedWino(p cpu.Conv2DParams, f *winoFilter, x, bias, z, y []float32) {
	hw, ohw := p.H*p.W, p.OutH()*p.OutW()
	g := winoGeom(p)
	bands := winoBandRows(p, g)
	if blockedWinoReorder || bands > 0 && len(x) > 0 && len(y) > 0 && &x[0] == &y[0] {
		blockedWinoReordered(p, f, x, bias, z, y)
		return
	}
	scratchAdd(int64(len(f.u)) * 4) // the packed filter, held for as long as the plan
	lo, hi, clampOn := winoClamp(p)
	cbi, cbo := cpu.Blocks(p.C), cpu.Blocks(p.M)
	if bands > 0 {
		for n := 0; n < p.N; n++ {
			var zn []float32
			if z != nil {
				zn = z[n*cbo*ohw*cpu.Block : (n+1)*cbo*ohw*cpu.Block]
			}
			wc := winoCalls.Get().(*winoCall)
			wc.set(winoCall{p: p, g: g, rows: bands, x: x[n*cbi*hw*cpu.Block : (n+1)*cbi*hw*cpu.Block], f: f, bias: bias,
				out: y[n*cbo*ohw*cpu.Block : (n+1)*cbo*ohw*cpu.Block], z: zn, lo: lo, hi: hi, clampOn: clampOn})
			dynamicFor((g.th+bands-1)/bands, 1, wc.bandBFn)
			wc.done()
		}
		return
	}
	vBuf := winoVPool.get(36 * g.vp)
	mBuf := winoMPool.get(36 * g.mp)
	offBuf := winoOffPool.get(p.C)
	v, mm, offs := *vBuf, *mBuf, *offBuf
	for c := range offs {
		offs[c] = int32(c * g.ld)
	}
	defer func() {
		winoVPool.put(vBuf)
		winoMPool.put(mBuf)
		winoOffPool.put(offBuf)
	}()
	for n := 0; n < p.N; n++ {
		xn := x[n*cbi*hw*cpu.Block : (n+1)*cbi*hw*cpu.Block]
		yn := y[n*cbo*ohw*cpu.Block : (n+1)*cbo*ohw*cpu.Block]
		var zn []float32
		if z != nil {
			zn = z[n*cbo*ohw*cpu.Block : (n+1)*cbo*ohw*cpu.Block]
		}
		wc := winoCalls.Get().(*winoCall)
		wc.set(winoCall{p: p, g: g, x: xn, v: v})
		dynamicFor(cbi, 1, wc.inBFn)
		wc.done()
		items := f.productItems(g.tiles)
		wc = winoCalls.Get().(*winoCall)
		wc.set(winoCall{p: p, g: g, f: f, v: v, mm: mm, offs: offs})
		dynamicFor(items, max(1, items/(8*cpu.Threads())), wc.prodFn)
		wc.done()
		wc = winoCalls.Get().(*winoCall)
		wc.set(winoCall{p: p, g: g, mm: mm, bias: bias, out: yn, z: zn, lo: lo, hi: hi, clampOn: clampOn})
		dynamicFor(cbo, 1, wc.outBFn)
		wc.done()
	}
}

// blockedWinoReordered is blockedWino through whole NCHW copies of the
// input and output around convWino (the tactic's first form; y may be x
// or z).
func blockedWinoReordered(p cpu.Conv2DParams, f *winoFilter, x, bias, z, y []float32) {
	hw, ohw := p.H*p.W, p.OutH()*p.OutW()
	xs := blockedWinoIn.get(p.N * p.C * hw)
	ys := blockedWinoOut.get(p.N * p.M * ohw)
	defer blockedWinoIn.put(xs)
	defer blockedWinoOut.put(ys)
	cpu.FromBlocked(p.N, p.C, hw, x, *xs)
	if z == nil {
		convWino(p, *xs, f, bias, *ys, nil, nil)
		cpu.ToBlocked(p.N, p.M, ohw, *ys, y)
		return
	}
	pa := p
	pa.Act = cpu.ActNone
	convWino(pa, *xs, f, bias, *ys, nil, nil)
	sum := blockedWinoSum.get(len(y))
	defer blockedWinoSum.put(sum)
	cpu.ToBlocked(p.N, p.M, ohw, *ys, *sum)
	lo, hi, clampOn := winoClamp(p)
	addClamp(y, *sum, z, lo, hi, clampOn)
	if lanes := p.M % cpu.Block; lanes != 0 {
		cbo := cpu.Blocks(p.M)
		for n := 0; n < p.N; n++ {
			ob := y[((n+1)*cbo-1)*ohw*cpu.Block : (n+1)*cbo*ohw*cpu.Block]
			for px := 0; px < ohw; px++ {
				clear(ob[px*cpu.Block+lanes : (px+1)*cpu.Block])
			}
		}
	}
}

// winoClamp returns the bounds of p's activation (actNone, actRelu or
// actClip) and whether it clamps.
func winoClamp(p cpu.Conv2DParams) (lo, hi float32, clampOn bool) {
	lo, hi = float32(math.Inf(-1)), float32(math.Inf(1))
	switch p.Act {
	case cpu.ActRelu:
		lo, clampOn = 0, true
	case cpu.ActClip:
		lo, hi, clampOn = p.ActMin, p.ActMax, true
	}
	return lo, hi, clampOn
}

// bandsBlocked computes the bands [b0, b1) of one blocked image (see
// winoCall.bands): per band, each input block's rows the band reads
// transposed into 16 planes (cpu.FromBlockedBlock: a block's rows are one
// run of pixels), the band's products, and per output block its 16 planes
// of the band's rows transposed into the output (and the residual added).
func (wc *winoCall) bandsBlocked(b0, b1 int) {
	p, g, rows, x, f, bias, out, z := &wc.p, &wc.g, wc.rows, wc.x, wc.f, wc.bias, wc.out, wc.z
	oh, ow := p.OutH(), p.OutW()
	hw, ohw := p.H*p.W, oh*ow
	gb := winoGeomRows(*p, rows)
	vBuf := winoVPool.get(36 * gb.vp)
	mBuf := winoMPool.get(36 * gb.mp)
	inBuf := winoInPool.get(gb.hp*gb.wp + 6*gb.wp + 16)
	outBuf := winoOutPool.get(40*gb.lt + 4*ow)
	offBuf := winoOffPool.get(p.C)
	// 16 planes of a band's input rows (gb.hp at most) or output rows
	planes := blockedWinoPlanes.get(cpu.Block * max(gb.hp*p.W, 4*rows*ow))
	var sum *[]float32
	if z != nil {
		sum = blockedWinoSum.get(cpu.Block * 4 * rows * ow)
	}
	defer func() {
		winoVPool.put(vBuf)
		winoMPool.put(mBuf)
		winoInPool.put(inBuf)
		winoOutPool.put(outBuf)
		winoOffPool.put(offBuf)
		blockedWinoPlanes.put(planes)
		if sum != nil {
			blockedWinoSum.put(sum)
		}
	}()
	v, mm, offs, pl := *vBuf, *mBuf, *offBuf, *planes
	ph, t := (*inBuf)[:gb.hp*gb.wp], (*inBuf)[gb.hp*gb.wp:]
	s, o, last := (*outBuf)[:24*gb.lt], (*outBuf)[24*gb.lt:40*gb.lt], (*outBuf)[40*gb.lt:]
	lo, hi, clampOn := wc.lo, wc.hi, wc.clampOn
	if z != nil {
		clampOn = false // after the residual
	}
	var pm winoPadMasks
	for band := b0; band < b1; band++ {
		ty0 := band * rows
		gr := winoGeomRows(*p, min(rows, g.th-ty0))
		// input rows [r0, r1) of the padded rows 4ty0-PadTop ... (gr.hp)
		y0 := 4*ty0 - p.PadTop
		r0, r1 := max(0, y0), min(p.H, y0+gr.hp)
		nr := r1 - r0
		for cb := 0; cb < cpu.Blocks(p.C); cb++ {
			lanes := min(cpu.Block, p.C-cb*cpu.Block)
			if nr > 0 {
				cpu.FromBlockedBlock(x[(cb*hw+r0*p.W)*cpu.Block:(cb*hw+r1*p.W)*cpu.Block], pl, nr*p.W, lanes)
			}
			for l := 0; l < lanes; l++ {
				c := cb*cpu.Block + l
				if nr > 0 {
					winoPadDeint(pl[l*nr*p.W:(l+1)*nr*p.W], nr, p.W, r0-y0, p.PadLeft, gr.hp, gr.lp, ph, &pm)
				} else {
					clear(ph[:gr.hp*gr.wp])
				}
				winoInRows(ph, gr.wp, gr.th, t, v[c*gr.ld:], gr.vp, gr.tw, gr.lp, gr.lt)
				offs[c] = int32(c * gr.ld)
			}
		}
		f.products(p.C, gr.tiles, gr.ld, gr.vp, gr.mp, v, mm, offs, 0, f.productItems(gr.tiles))
		n := min(4*gr.th, oh-4*ty0) // output rows of the band
		np := n * ow
		for ob := 0; ob < cpu.Blocks(p.M); ob++ {
			lanes := min(cpu.Block, p.M-ob*cpu.Block)
			for l := 0; l < lanes; l++ {
				m := ob*cpu.Block + l
				var bv float32
				if bias != nil {
					bv = bias[m]
				}
				winoOutChannel(mm[m*gr.ld:], gr.mp, gr.lt, gr.th, s, o, pl[l*np:(l+1)*np], ow, gr.tw, n, last, bv, lo, hi, clampOn)
			}
			at := (ob*ohw + 4*ty0*ow) * cpu.Block
			yb := out[at : at+np*cpu.Block]
			if z == nil {
				cpu.ToBlockedBlock(pl, yb, np, lanes)
				continue
			}
			sb := (*sum)[:np*cpu.Block]
			cpu.ToBlockedBlock(pl, sb, np, lanes)
			addClamp(yb, sb, z[at:at+np*cpu.Block], lo, hi, wc.clampOn)
			if lanes < cpu.Block {
				for px := 0; px < np; px++ {
					clear(yb[px*cpu.Block+lanes : (px+1)*cpu.Block])
				}
			}
		}
	}
}

// inputBlocked transforms the input channel blocks [b0, b1) of one
// blocked image wc.x (see winoCall.input).
func (wc *winoCall) inputBlocked(b0, b1 int) {
	p, g, x, v := &wc.p, &wc.g, wc.x, wc.v
	hw := p.H * p.W
	buf := winoInPool.get(g.hp*g.wp + 6*g.wp + 16)
	planes := blockedWinoPlanes.get(cpu.Block * hw)
	ph := (*buf)[:g.hp*g.wp]
	t := (*buf)[g.hp*g.wp:]
	pl := *planes
	var pm winoPadMasks
	for b := b0; b < b1; b++ {
		lanes := min(cpu.Block, p.C-b*cpu.Block)
		cpu.FromBlockedBlock(x[b*hw*cpu.Block:(b+1)*hw*cpu.Block], pl, hw, lanes)
		for l := 0; l < lanes; l++ {
			c := b*cpu.Block + l
			winoPadDeint(pl[l*hw:(l+1)*hw], p.H, p.W, p.PadTop, p.PadLeft, g.hp, g.lp, ph, &pm)
			winoInRows(ph, g.wp, g.th, t, v[c*g.ld:], g.vp, g.tw, g.lp, g.lt)
		}
	}
	winoInPool.put(buf)
	blockedWinoPlanes.put(planes)
}

// outputBlocked transforms the output channel blocks [b0, b1) of one
// blocked image wc.out (see winoCall.output), pad lanes zero. With a
// residual wc.z, a block's sums go to a scratch block first, and
// act(sum + z) into out, element by element (out may be z).
func (wc *winoCall) outputBlocked(b0, b1 int) {
	p, g, mm, bias, out, z := &wc.p, &wc.g, wc.mm, wc.bias, wc.out, wc.z
	oh, ow := p.OutH(), p.OutW()
	plane := oh * ow
	bl := plane * cpu.Block
	buf := winoOutPool.get(40*g.lt + 4*ow)
	planes := blockedWinoPlanes.get(bl)
	s := (*buf)[:24*g.lt]
	o := (*buf)[24*g.lt : 40*g.lt]
	last := (*buf)[40*g.lt:]
	pl := *planes
	lo, hi, clampOn := wc.lo, wc.hi, wc.clampOn
	var sum *[]float32
	if z != nil {
		sum = blockedWinoSum.get(bl)
		clampOn = false // after the residual
	}
	for b := b0; b < b1; b++ {
		lanes := min(cpu.Block, p.M-b*cpu.Block)
		for l := 0; l < lanes; l++ {
			m := b*cpu.Block + l
			var bv float32
			if bias != nil {
				bv = bias[m]
			}
			winoOutChannel(mm[m*g.ld:], g.mp, g.lt, g.th, s, o, pl[l*plane:(l+1)*plane], ow, g.tw, oh, last, bv, lo, hi, clampOn)
		}
		ob := out[b*bl : (b+1)*bl]
		if z == nil {
			cpu.ToBlockedBlock(pl, ob, plane, lanes)
			continue
		}
		cpu.ToBlockedBlock(pl, *sum, plane, lanes)
		addClamp(ob, *sum, z[b*bl:(b+1)*bl], lo, hi, wc.clampOn)
		if lanes < cpu.Block {
			// the pad lanes, zero again (as the direct kernel leaves
			// them, whatever z's pad lanes hold and the clamp does)
			for px := 0; px < plane; px++ {
				clear(ob[px*cpu.Block+lanes : (px+1)*cpu.Block])
			}
		}
	}
	if sum != nil {
		blockedWinoSum.put(sum)
	}
	winoOutPool.put(buf)
	blockedWinoPlanes.put(planes)
}
