package kernels

import (
	"math"
	"sync"

	"github.com/kilnai/kiln/device/cpu"
)

// The direct convolution with the output channels as the vector lanes
// ("direct-cl" tactic of FusedConv), for the layers where the direct
// convolution's tiles of 48 positions fit badly: small planes (7x7 to
// 20x20) with many channels. A tile is 64 output channels (4 vectors) x 6
// output positions in 24 accumulators; per tap (c, kh, kw) it loads 4
// vectors of weights and broadcasts the input of each position, 24 FMAs
// (the layout of ONNX Runtime's NCHWc kernels, with the input kept NCHW).
// Positions are any 6 output positions, each read through its own base
// offset, so no column is computed for nothing; the input is the direct
// convolution's padded phase planes (directInput), the outputs are
// scattered into the NCHW output. Weights are packed once per plan:
// [M/64][K][64].

// clNV is the tile's output channels.
const clNV = 64

// clTactic names the channels-as-lanes direct convolution.
const clTactic = "direct-cl"

// clFilter is the weights packed for convCL: per block of 64 output
// channels, K = C*KH*KW rows of 64 (zero past M).
type clFilter struct {
	m, c, kh, kw int
	packed       []float32
	// masks[b][v]: the lanes of vector v of block b that are output
	// channels (< m)
	masks [][4]uint16
}

func newCLFilter(w []float32, m, c, kh, kw int) *clFilter {
	k := c * kh * kw
	mb := (m + clNV - 1) / clNV
	f := &clFilter{m: m, c: c, kh: kh, kw: kw, packed: make([]float32, mb*k*clNV), masks: make([][4]uint16, mb)}
	for o := 0; o < m; o++ {
		blk := f.packed[(o/clNV)*k*clNV:]
		for q, v := range w[o*k : (o+1)*k] {
			blk[q*clNV+o%clNV] = v
		}
		f.masks[o/clNV][o%clNV/16] |= 1 << (o % 16)
	}
	return f
}

func (f *clFilter) fits(p cpu.Conv2DParams) bool {
	return f != nil && f.m == p.M && f.c == p.C && f.kh == p.KH && f.kw == p.KW
}

var clBiasPool directPool[float32] // the bias padded to whole blocks

// clApplies reports whether convCL computes p: what the direct
// convolution computes, with at least 32 output channels.
func clApplies(p cpu.Conv2DParams) bool {
	return directApplies(p) && p.M >= 32 && int64(p.M)*int64(p.OutH()*p.OutW())*4 < math.MaxInt32
}

// convCL computes y = act(conv(x, w) + bias) with the packed filter f, or
// with ep, y = ep(conv(x, w) + bias + z) (see convDirect).
func convCL(p cpu.Conv2DParams, x []float32, f *clFilter, bias, y, z []float32, ep *epilogue) {
	scratchAdd(int64(len(f.packed)) * 4)
	if ep != nil {
		p.Act = cpu.ActNone
	} else {
		z = nil
	}
	sh, sw := p.StrideH, p.StrideW
	hp, wp := p.H+p.PadTop+p.PadBottom, p.W+p.PadLeft+p.PadRight
	hq, wq := (hp+sh-1)/sh, (wp+sw-1)/sw
	ph, pw := min(sh, p.KH), min(sw, p.KW)
	oh, ow := p.OutH(), p.OutW()
	plane := hq * wq
	chStride := ph * pw * plane
	k := p.C * p.KH * p.KW
	inPlace := p.KH == 1 && p.KW == 1 && sh == 1 && sw == 1 &&
		p.PadTop == 0 && p.PadLeft == 0 && p.PadBottom == 0 && p.PadRight == 0
	offBuf := directOffPool.get(k)
	defer directOffPool.put(offBuf)
	offs := *offBuf
	maxOff := directTapOffsets(offs, p, chStride, plane, wq, pw)
	lo, hi, clampOn := float32(math.Inf(-1)), float32(math.Inf(1)), false
	switch p.Act {
	case cpu.ActRelu:
		lo, clampOn = 0, true
	case cpu.ActClip:
		lo, hi, clampOn = p.ActMin, p.ActMax, true
	}
	mb := (p.M + clNV - 1) / clNV
	bBuf := clBiasPool.get(mb * clNV)
	defer clBiasPool.put(bBuf)
	bpad := *bBuf
	clear(bpad)
	if bias != nil {
		copy(bpad, bias[:p.M])
	}
	npos := oh * ow
	groups := (npos + 5) / 6
	items := groups * mb
	for n := 0; n < p.N; n++ {
		xn := x[n*p.C*p.H*p.W : (n+1)*p.C*p.H*p.W]
		yn := y[n*p.M*oh*ow : (n+1)*p.M*oh*ow]
		src := xn
		var inBuf *[]float32
		if !inPlace {
			inBuf = directInPool.get(p.C*chStride + directSlack + p.KW)
			directInput(p, xn, *inBuf, hq, wq, ph, pw)
			src = *inBuf
		}
		if last := maxOff + (oh-1)*wq + ow; last > len(src) {
			panic("nn: direct-cl convolution reads past its input")
		}
		cc := clCalls.Get().(*clCall)
		*cc = clCall{
			k: k, f: f, src: src, offs: offs, yn: yn, bpad: bpad, npos: npos, ow: ow, wq: wq, hw: oh * ow,
			groups: groups, mb: mb, lo: lo, hi: hi, clampOn: clampOn,
			// With more than 1 MiB of weights, the groups of one block in
			// turn instead, so that the block stays in L2 (a 512 -> 1000
			// 1x1 layer at 13x13: 1.84 -> 1.40 ms of CPU).
			blockOuter: clBlockOuter(len(f.packed)*4, 4*len(src), mb, cpu.Threads()),
			fn:         cc.fn,
		}
		dynamicFor(items, max(1, items/(8*cpu.Threads())), cc.fn)
		*cc = clCall{fn: cc.fn} // drop the references to the caller's memory
		clCalls.Put(cc)
		if inBuf != nil {
			directInPool.put(inBuf)
		}
		var zn []float32
		if z != nil {
			zn = z[n*p.M*oh*ow : (n+1)*p.M*oh*ow]
		}
		switch {
		case ep != nil && ep.act == actSiLU && zn == nil:
			convSiLUPar(yn) // the AVX-512 SiLU (directFinish's is fastmath's)
		case ep != nil:
			directFinish(p, yn, zn, ep, nil, false, 0, 0)
		}
	}
}

// clCall is one image of a convCL call, pooled with the function it hands
// to the worker pool (made once per clCall, so that a call allocates
// nothing).
type clCall struct {
	k                   int
	f                   *clFilter
	src, yn, bpad       []float32
	offs                []int32
	npos, ow, wq, hw    int
	groups, mb          int
	lo, hi              float32
	clampOn, blockOuter bool
	fn                  func(i0, i1 int)
}

var clCalls = sync.Pool{New: func() any {
	cc := &clCall{}
	cc.fn = cc.items
	return cc
}}

// items computes the (group of positions, weight block) items [i0, i1).
func (cc *clCall) items(i0, i1 int) {
	k, f, mb, ow, wq := cc.k, cc.f, cc.mb, cc.ow, cc.wq
	var pos, ypos [6]int32
	for it := i0; it < i1; it++ {
		g, b := it/mb, it%mb // a group's input stays in L1 for every block
		if cc.blockOuter {
			g, b = it%cc.groups, it/cc.groups
		}
		cnt := min(6, cc.npos-6*g)
		for j := range 6 {
			o := 6*g + min(j, cnt-1) // missing positions repeat the last
			pos[j] = int32(o/ow*wq + o%ow)
			ypos[j] = int32(o)
		}
		convCLTile(k, f.packed[b*k*clNV:(b+1)*k*clNV], cc.src, cc.offs, &pos, cc.yn[b*clNV*cc.hw:], &ypos, cc.hw,
			cc.bpad[b*clNV:], cc.lo, cc.hi, cc.clampOn, &f.masks[b], cnt)
	}
}

// clOrder overrides, for tests and benchmarks, the order in which convCL
// visits its (group, block) items: orderAuto by clBlockOuter, orderTile or
// orderBlock (the values of directOrder).
var clOrder = orderAuto

// clBlockOuter reports whether convCL visits its items block by block (every
// group of positions of one block of 64 output channels, then the next
// block) rather than group by group, given the packed weights' bytes, the
// (padded) input's bytes, the number of blocks and of threads. Block by
// block when the weights are large (over 1 MiB: one block at a time stays
// in L2), and with more than one thread when there are two blocks or more
// and the weights outweigh the input: DynamicFor deals the items in
// contiguous parts, so each thread then computes its own output channels
// and reads only their weights (at most mb/threads+1 blocks instead of
// every block; each core keeps its share of a model's weights in its L2
// between inferences) while every thread reads the whole input, the way
// ONNX Runtime's NCHWc convolution splits its work (output rows innermost).
func clBlockOuter(wbytes, inBytes, mb, threads int) bool {
	switch clOrder {
	case orderTile:
		return false
	case orderBlock:
		return true
	}
	return wbytes > 1<<20 || threads > 1 && mb > 1 && wbytes >= inBytes
}

// convCLTileGo is the tile of convCL in Go: for j < npos and output
// channel o < 64 with its bit set in masks, y[ypos[j] + o*ys] = clamp(
// bias[o] + sum over q < k of w[q*64+o] * src[offs[q]+pos[j]]).
func convCLTileGo(k int, w, src []float32, offs []int32, pos *[6]int32, y []float32, ypos *[6]int32, ys int, bias []float32, lo, hi float32, clamp bool, masks *[4]uint16, npos int) {
	for j := 0; j < npos; j++ {
		for o := 0; o < clNV; o++ {
			if masks[o/16]&(1<<(o%16)) == 0 {
				continue
			}
			s := bias[o]
			for q := 0; q < k; q++ {
				s += w[q*clNV+o] * src[int(offs[q])+int(pos[j])]
			}
			if clamp {
				s = min(max(s, lo), hi)
			}
			y[int(ypos[j])+o*ys] = s
		}
	}
}
