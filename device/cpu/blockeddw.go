package cpu

import "sync"

// bdwBandPixels is about how many output pixels of one channel block make
// one item of a blocked depthwise call's DynamicFor: whole output rows,
// at least one.
const bdwBandPixels = 512

// blockedDepthwise is BlockedConv2D for a depthwise filter (Group == C ==
// M): one DynamicFor over (image, channel block, band of output rows).
// Each output row of a block is a vertical sum over the taps of an input
// vector (16 channels of one pixel) times the tap's weight vector; 3x3
// filters of dilation 1 and column stride 1 or 2 run bdwBand3x3's AVX-512
// kernels (blockeddw_amd64.s), a band per call; other filters of column
// stride 1 or 2 and at most bdwMaxTaps taps bdwRowTaps' (any size and
// dilation, the taps listed per row), the rest bdwRowGo.
func blockedDepthwise(f *BlockedFilter, x, bias, z, y []float32) {
	p := f.P
	oh, ow := p.OutH(), p.OutW()
	cb := Blocks(p.C)
	k := p.KH * p.KW
	_ = x[BlockedLen(p.N, p.C, p.H*p.W)-1]
	_ = y[BlockedLen(p.N, p.M, oh*ow)-1]
	if z != nil {
		_ = z[BlockedLen(p.N, p.M, oh*ow)-1]
	}
	if bias != nil {
		_ = bias[p.C-1]
	}
	_ = f.W[cb*k*Block-1]
	band := min(oh, max(1, bdwBandPixels/max(1, ow)))
	nb := (oh + band - 1) / band
	lo, hi := actBounds(p)
	dc := bdwCalls.Get().(*bdwCall)
	*dc = bdwCall{f: f, x: x, bias: bias, z: z, y: y, lo: lo, hi: hi, band: band, nb: nb,
		asm: bdwAsmOK(&p), taps: bdwTapsOK(&p), fn: dc.fn}
	dc.g = bdwGeom{oh: oh, ow: ow, cb: cb, k: k, in: p.H * p.W * Block, out: oh * ow * Block}
	s := p.StrideW
	dc.g.jlo = min(ow, (p.PadLeft+s-1)/s)
	if t := p.W - 1 - (p.KW-1)*p.DilW + p.PadLeft; t >= 0 {
		dc.g.jhi = t/s + 1
	}
	dc.g.jhi = min(ow, max(dc.g.jhi, dc.g.jlo))
	for l := range dc.full.lo {
		dc.full.lo[l], dc.full.hi[l] = lo, hi
	}
	DynamicFor(p.N*cb*nb, 1, dc.fn)
	*dc = bdwCall{fn: dc.fn} // drop the references to the caller's memory
	bdwCalls.Put(dc)
}

// bdwCall is one blockedDepthwise call, pooled with the function it hands
// to the worker pool (made once per bdwCall, so that a call allocates
// nothing).
type bdwCall struct {
	f             *BlockedFilter
	x, bias, z, y []float32
	lo, hi        float32
	band, nb      int
	asm, taps     bool
	g             bdwGeom
	// full holds the bounds of a block without pad lanes (bias unused).
	full bdwVecs
	fn   func(lo, hi int)
}

// bdwGeom is the geometry of a blocked depthwise call, worked out once:
// output size, blocks, taps, floats of one block's input and output
// plane, and the output pixels [jlo, jhi) whose taps all fall inside a row.
type bdwGeom struct {
	oh, ow, cb, k, in, out, jlo, jhi int
}

var bdwCalls = sync.Pool{New: func() any {
	dc := &bdwCall{}
	dc.fn = dc.items
	return dc
}}

// bdwVecs is what the epilogue of one channel block adds and clamps to:
// the bias, and the lower and upper bounds of the activation, each one
// vector; pad lanes have bias 0 and bounds [0, 0], so they come out 0.
type bdwVecs struct {
	bias, lo, hi [Block]float32
}

// items computes the items [lo0, hi0): item it is band it%nb of channel
// block (it/nb)%cb of image it/(nb*cb), stepped without divisions.
func (dc *bdwCall) items(lo0, hi0 int) {
	f := dc.f
	p := &f.P
	g := &dc.g
	var v bdwVecs
	lastB := -1
	band, nbk := lo0%dc.nb, lo0/dc.nb
	b := nbk % g.cb
	for it := lo0; it < hi0; it++ {
		if b != lastB {
			lastB = b
			dc.vecs(&v, b)
		}
		xs := dc.x[nbk*g.in : (nbk+1)*g.in]
		ys := dc.y[nbk*g.out : (nbk+1)*g.out]
		var zs []float32
		if dc.z != nil {
			zs = dc.z[nbk*g.out : (nbk+1)*g.out]
		}
		ws := f.W[b*g.k*Block : (b+1)*g.k*Block]
		i0 := band * dc.band
		i1 := min(i0+dc.band, g.oh)
		if dc.asm {
			bdwBand3x3(p, g, xs, ws, &v, zs, ys, i0, i1)
		} else if dc.taps {
			for i := i0; i < i1; i++ {
				bdwRowTaps(p, g, xs, ws, &v, zs, ys, i)
			}
		} else {
			for i := i0; i < i1; i++ {
				bdwRowGo(p, xs, ws, &v, zs, ys, i)
			}
		}
		if band++; band == dc.nb {
			band = 0
			nbk++
			if b++; b == g.cb {
				b = 0
			}
		}
	}
}

// bdwMaxTaps bounds the taps of a filter bdwRowTaps runs.
const bdwMaxTaps = 64

// vecs sets v to channel block b's bias and bounds.
func (dc *bdwCall) vecs(v *bdwVecs, b int) {
	c0 := b * Block
	if c := dc.f.P.C; c0+Block > c {
		for l := 0; l < Block; l++ {
			v.bias[l], v.lo[l], v.hi[l] = 0, 0, 0
			if c0+l < c {
				v.lo[l], v.hi[l] = dc.lo, dc.hi
				if dc.bias != nil {
					v.bias[l] = dc.bias[c0+l]
				}
			}
		}
		return
	}
	v.lo, v.hi = dc.full.lo, dc.full.hi
	v.bias = [Block]float32{}
	if dc.bias != nil {
		v.bias = [Block]float32(dc.bias[c0 : c0+Block])
	}
}

// bdwRowGo computes output row i of one channel block: xs is the block's
// input plane [H][W][Block], ws its weights [KH][KW][Block], zs (nil for
// none) and ys its residual and output planes [OH][OW][Block].
func bdwRowGo(p *Conv2DParams, xs, ws []float32, v *bdwVecs, zs, ys []float32, i int) {
	ow := p.OutW()
	wb := p.W * Block
	for j := 0; j < ow; j++ {
		acc := v.bias
		for kh := 0; kh < p.KH; kh++ {
			ih := i*p.StrideH - p.PadTop + kh*p.DilH
			if ih < 0 || ih >= p.H {
				continue
			}
			xrow := xs[ih*wb : (ih+1)*wb]
			for kw := 0; kw < p.KW; kw++ {
				iw := j*p.StrideW - p.PadLeft + kw*p.DilW
				if iw < 0 || iw >= p.W {
					continue
				}
				xv := (*[Block]float32)(xrow[iw*Block:])
				wv := (*[Block]float32)(ws[(kh*p.KW+kw)*Block:])
				for l := range acc {
					acc[l] += xv[l] * wv[l]
				}
			}
		}
		o := (i*ow + j) * Block
		if zs != nil {
			zv := (*[Block]float32)(zs[o:])
			for l := range acc {
				acc[l] += zv[l]
			}
		}
		yv := (*[Block]float32)(ys[o:])
		for l := range acc {
			yv[l] = min(max(acc[l], v.lo[l]), v.hi[l])
		}
	}
}
