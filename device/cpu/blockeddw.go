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
// kernels (blockeddw_amd64.s), a band per call, the rest bdwRowGo.
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
		asm: bdwAsmOK(&p), fn: dc.fn}
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
	asm           bool
	fn            func(lo, hi int)
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
// block (it/nb)%cb of image it/(nb*cb).
func (dc *bdwCall) items(lo0, hi0 int) {
	f := dc.f
	p := &f.P
	oh, ow := p.OutH(), p.OutW()
	cb := Blocks(p.C)
	k := p.KH * p.KW
	in, out := p.H*p.W*Block, oh*ow*Block
	var v bdwVecs
	lastB := -1
	for it := lo0; it < hi0; it++ {
		band := it % dc.nb
		nbk := it / dc.nb
		b := nbk % cb
		if b != lastB {
			lastB = b
			for l := 0; l < Block; l++ {
				c := b*Block + l
				if c >= p.C {
					v.bias[l], v.lo[l], v.hi[l] = 0, 0, 0
					continue
				}
				v.bias[l], v.lo[l], v.hi[l] = 0, dc.lo, dc.hi
				if dc.bias != nil {
					v.bias[l] = dc.bias[c]
				}
			}
		}
		xs := dc.x[nbk*in : (nbk+1)*in]
		ys := dc.y[nbk*out : (nbk+1)*out]
		var zs []float32
		if dc.z != nil {
			zs = dc.z[nbk*out : (nbk+1)*out]
		}
		ws := f.W[b*k*Block : (b+1)*k*Block]
		i0 := band * dc.band
		i1 := min(i0+dc.band, oh)
		if dc.asm {
			bdwBand3x3(p, xs, ws, &v, zs, ys, i0, i1)
			continue
		}
		for i := i0; i < i1; i++ {
			bdwRowGo(p, xs, ws, &v, zs, ys, i)
		}
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
