package kernels

import (
	"math"
	"sync"

	"github.com/kilnai/kiln/device/cpu"
)

// The 1x1 convolution as a GEMM with the output positions as its rows
// ("gemm-t" tactic of FusedConv), for small planes with many channels
// (resnet50's layer4: 7x7, 512-2048 channels): Y^T[HW, M] = X^T[HW, C] x
// W^T[C, M]. In the usual orientation (im2col: Y[M, HW] = W[M, C] x X[C,
// HW]) a 7x7 plane gives the GEMM 49 columns, a 32-wide panel and a 17-wide
// edge one that costs as much (77% of the lanes useful), and the weights are
// A, packed again on every call. Here the 49 positions are rows (14+14+14+7:
// 87.5% of the micro-kernel's rows useful), the weights are B, packed once
// per plan (cpu.PackB) and streamed with the tile's prefetch, and the GEMM
// splits its columns (the output channels) over the threads, so each core
// reads only its half of the weights. The input is transposed (and, for
// stride 2, gathered) into X^T once per call; each thread's block of Y^T is
// transposed into the NCHW output with the bias, the residual and
// ReLU/clip while it is in its cache.

// gemmTTactic names the transposed-GEMM convolution.
const gemmTTactic = "gemm-t"

// gemmTFilter is W^T (K x M, K = C*KH*KW) packed for cpu.SgemmPacked, the
// only copy of W^T kept (cpu.PackBOnly: a plan holds the weights twice, as
// the other tactics' packed filters do, not three times).
type gemmTFilter struct {
	m, c, kh, kw int
	pb           *cpu.PackedB
}

func newGemmTFilter(w []float32, m, c, kh, kw int) *gemmTFilter {
	k := c * kh * kw
	wt := make([]float32, k*m)
	transposeF32(wt, m, w, k, m, k)
	return &gemmTFilter{m: m, c: c, kh: kh, kw: kw, pb: cpu.PackBOnly(k, m, wt, m)} // wt is dropped: the packed copy is the only one
}

func (f *gemmTFilter) fits(p cpu.Conv2DParams) bool {
	return f != nil && f.m == p.M && f.c == p.C && f.kh == p.KH && f.kw == p.KW
}

// gemmTApplies reports whether convGemmT computes p: a convolution of one
// group without dilation, at least 32 output channels and 16 taps (C*KH*KW),
// small enough for int32 offsets.
func gemmTApplies(p cpu.Conv2DParams) bool {
	if p.Validate() != nil || p.Group != 1 || p.DilH != 1 || p.DilW != 1 || p.M < 32 || p.C*p.KH*p.KW < 16 {
		return false
	}
	hp, wp := int64(p.H+p.PadTop+p.PadBottom), int64(p.W+p.PadLeft+p.PadRight)
	k := int64(p.C * p.KH * p.KW)
	hw := int64(p.OutH() * p.OutW())
	return int64(p.C)*hp*wp < math.MaxInt32 && hw*(max(int64(p.M), k)+32) < math.MaxInt32
}

// gemmTOffered reports whether FusedConv offers the tactic for p: planes of
// at most 196 output positions (14x14) whose X^T stays under 4 MiB. At
// 20x20 to 28x28 it lost to the direct convolutions on every layer of the
// shared models and resnet50 (NOTES.md section 22), so offering it there
// only gave a timer under load one more way to choose wrong. (Larger
// planes run in bands of positions; on resnet50's stem, 3 -> 64 7x7/2 at
// 224x224, that took 2.8-3.6 ms of CPU against the direct convolution's
// 1.75.)
func gemmTOffered(p cpu.Conv2DParams) bool {
	hw, k := p.OutH()*p.OutW(), p.C*p.KH*p.KW
	return gemmTApplies(p) && hw <= 196 && hw*k <= 1<<20
}

var (
	gemmTInPool  directPool[float32] // X^T
	gemmTOutPool directPool[float32] // Y^T
	gemmTPadPool directPool[float32] // the padded input
)

// gemmTLd returns the row stride of X^T or Y^T for n columns: a multiple
// of 16 that is not a multiple of 256 (rows 1 KiB apart would share a few
// L1 sets when the transposes walk down a column).
func gemmTLd(n int) int {
	ld := (n + 15) &^ 15
	if ld%256 == 0 {
		ld += 16
	}
	return ld
}

// gemmTCall is one convGemmT call's state, pooled with the functions it
// hands to the worker pool and the GEMM (made once per gemmTCall, so that
// a call allocates nothing).
type gemmTCall struct {
	p                     cpu.Conv2DParams
	xt, yt, xn, yb, zb    []float32
	padded, bias          []float32
	bpos, tapOffs         []int32
	ldx, ldy, plane, hw   int
	lo, hi                float32
	clamp                 bool
	padFn, inFn, im2colFn func(lo, hi int)
	epiFn                 func(i0, i1, j0, j1 int)
}

var gemmTCalls = sync.Pool{New: func() any {
	c := &gemmTCall{}
	c.padFn, c.inFn, c.im2colFn, c.epiFn = c.pad, c.in, c.im2col, c.epi
	return c
}}

// pad writes the zero-padded planes of channels [c0, c1).
func (c *gemmTCall) pad(c0, c1 int) {
	in := c.p.H * c.p.W
	for ch := c0; ch < c1; ch++ {
		gemmTPad(c.padded[ch*c.plane:(ch+1)*c.plane], c.xn[ch*in:(ch+1)*in], c.p)
	}
}

// in writes X^T of a 1x1 convolution for the channels [16*b0, 16*b1).
func (c *gemmTCall) in(b0, b1 int) {
	gemmTIn(c.xt, c.ldx, c.xn, c.plane, c.bpos, b0*16, min(b1*16, c.p.C))
}

// im2col writes X^T's rows [i0, i1) from the padded input.
func (c *gemmTCall) im2col(i0, i1 int) {
	gemmTIm2col(c.xt[i0*c.ldx:], c.ldx, c.padded, c.tapOffs, c.bpos[i0:i1])
}

// epi writes a block of Y^T to the output.
func (c *gemmTCall) epi(i0, i1, j0, j1 int) {
	gemmTOut(c.yb, c.hw, c.yt, c.ldy, i0, i1, j0, j1, c.bias, c.zb, c.lo, c.hi, c.clamp)
}

// convGemmT computes y = act(conv(x, w) + bias) with the packed filter f,
// or with ep, y = ep(conv(x, w) + bias + z) (see convDirect).
func convGemmT(p cpu.Conv2DParams, x []float32, f *gemmTFilter, bias, y, z []float32, ep *epilogue) {
	scratchAdd(f.pb.Bytes())
	c := gemmTCalls.Get().(*gemmTCall)
	defer gemmTCalls.Put(c)
	c.lo, c.hi, c.clamp = float32(math.Inf(-1)), float32(math.Inf(1)), false
	act := p.Act
	zIn := false // the residual added in the transposed write
	if ep != nil {
		act = cpu.ActNone
		switch ep.act {
		case actNone:
			zIn = true
		case actRelu:
			act, zIn = cpu.ActRelu, true
		case actClip:
			act, zIn = cpu.ActClip, true
			p.ActMin, p.ActMax = ep.p0, ep.p1
		}
		if z == nil && zIn {
			ep = nil // all of it in the write
		}
	} else {
		z = nil
	}
	switch act {
	case cpu.ActRelu:
		c.lo, c.clamp = 0, true
	case cpu.ActClip:
		c.lo, c.hi, c.clamp = p.ActMin, p.ActMax, true
	}
	c.p = p
	oh, ow := p.OutH(), p.OutW()
	hw := oh * ow
	c.hw = hw
	k := p.C * p.KH * p.KW
	c.ldx, c.ldy = gemmTLd(k), gemmTLd(p.M)
	band := gemmTBand(hw, c.ldx, c.ldy)
	xtBuf := gemmTInPool.get(band * c.ldx)
	ytBuf := gemmTOutPool.get(band * c.ldy)
	defer gemmTInPool.put(xtBuf)
	defer gemmTOutPool.put(ytBuf)
	c.xt, c.yt = *xtBuf, *ytBuf
	pointwise := p.KH == 1 && p.KW == 1 && p.PadTop == 0 && p.PadLeft == 0 && p.PadBottom == 0 && p.PadRight == 0
	// the input as the gathers read it: x itself for a 1x1 without
	// padding, else a zero-padded copy
	hp, wp := p.H, p.W
	if !pointwise {
		hp, wp = p.H+p.PadTop+p.PadBottom, p.W+p.PadLeft+p.PadRight
	}
	c.plane = hp * wp
	posBuf := directOffPool.get(hw)
	defer directOffPool.put(posBuf)
	pos := *posBuf
	for r := 0; r < oh; r++ {
		for col := 0; col < ow; col++ {
			pos[r*ow+col] = int32(r*p.StrideH*wp + col*p.StrideW)
		}
	}
	c.padded, c.tapOffs = nil, nil
	if !pointwise {
		offBuf := directOffPool.get(k)
		defer directOffPool.put(offBuf)
		c.tapOffs = *offBuf
		for ch := 0; ch < p.C; ch++ {
			for kh := 0; kh < p.KH; kh++ {
				for kw := 0; kw < p.KW; kw++ {
					c.tapOffs[(ch*p.KH+kh)*p.KW+kw] = int32(ch*c.plane + kh*wp + kw)
				}
			}
		}
		padBuf := gemmTPadPool.get(p.C * c.plane)
		defer gemmTPadPool.put(padBuf)
		c.padded = *padBuf
	}
	c.bias = bias
	if bias == nil {
		bBuf := clBiasPool.get(p.M)
		defer clBiasPool.put(bBuf)
		c.bias = *bBuf
		clear(c.bias)
	}
	nt := cpu.Threads()
	for n := 0; n < p.N; n++ {
		c.xn = x[n*p.C*p.H*p.W : (n+1)*p.C*p.H*p.W]
		yn := y[n*p.M*hw : (n+1)*p.M*hw]
		var zn []float32
		if z != nil {
			zn = z[n*p.M*hw : (n+1)*p.M*hw]
		}
		if !pointwise {
			cpu.ParallelFor(p.C, max(1, p.C/(2*nt)), c.padFn)
		}
		for b0 := 0; b0 < hw; b0 += band {
			b1 := min(hw, b0+band)
			c.bpos = pos[b0:b1]
			if pointwise {
				// X^T: channels split over the threads, 16 at a time
				cb := (p.C + 15) / 16
				cpu.ParallelFor(cb, max(1, cb/(2*nt)), c.inFn)
			} else {
				// X^T: the im2col rows of the positions, split over the threads
				cpu.ParallelFor(b1-b0, max(1, (b1-b0)/(2*nt)), c.im2colFn)
			}
			c.zb = nil
			if zIn && zn != nil {
				c.zb = zn[b0:]
			}
			c.yb = yn[b0:]
			cpu.SgemmPacked(cpu.Blocking{}, b1-b0, c.xt, c.ldx, f.pb, c.yt, c.ldy, c.epiFn)
		}
		switch {
		case ep != nil && ep.act == actSiLU && zn == nil:
			convSiLUPar(yn)
		case ep != nil && zIn:
		case ep != nil:
			directFinish(p, yn, zn, ep, nil, false, 0, 0)
		}
	}
	// drop the references to the caller's memory
	c.xn, c.yb, c.zb, c.bias, c.xt, c.yt, c.padded, c.bpos, c.tapOffs = nil, nil, nil, nil, nil, nil, nil, nil, nil
}

// gemmTBand returns how many output positions convGemmT computes at a time:
// all of them where X^T and Y^T take at most 1 MiB together, else bands of
// a multiple of 14 rows (the GEMM tile's) that do, so that each band's
// im2col rows and results stay in L2 between the phases.
func gemmTBand(hw, ldx, ldy int) int {
	per := 4 * (ldx + ldy)
	if hw*per <= 1<<20 {
		return hw
	}
	return max(14, (1<<20)/per/14*14)
}

// gemmTPad writes the plane x (p.H x p.W) with p's padding of zeros into
// dst ((H+pads) x (W+pads)).
func gemmTPad(dst, x []float32, p cpu.Conv2DParams) {
	wp := p.W + p.PadLeft + p.PadRight
	clear(dst[:p.PadTop*wp])
	for r := 0; r < p.H; r++ {
		row := dst[(p.PadTop+r)*wp:][:wp]
		clear(row[:p.PadLeft])
		copy(row[p.PadLeft:], x[r*p.W:(r+1)*p.W])
		clear(row[p.PadLeft+p.W:])
	}
	clear(dst[(p.PadTop+p.H)*wp:])
}

// gemmTIm2colGo writes the im2col rows of the positions pos into xt (row
// stride ldx): xt[i*ldx+q] = src[offs[q]+pos[i]].
func gemmTIm2colGo(xt []float32, ldx int, src []float32, offs, pos []int32) {
	for i, o := range pos {
		row := xt[i*ldx:][:len(offs)]
		for q, t := range offs {
			row[q] = src[t+o]
		}
	}
}

// gemmTOutGo writes rows [i0, i1) and columns [j0, j1) of yt (row stride
// ldy) transposed into y (M planes of hw): y[j*hw+i] = clamp(yt[i*ldy+j] +
// bias[j] + z[j*hw+i]) (no bias or residual where nil).
func gemmTOutGo(y []float32, hw int, yt []float32, ldy, i0, i1, j0, j1 int, bias, z []float32, lo, hi float32, clamp bool) {
	const tb = 16
	var tile [tb * tb]float32
	for jb := j0; jb < j1; jb += tb {
		nj := min(tb, j1-jb)
		for ib := i0; ib < i1; ib += tb {
			ni := min(tb, i1-ib)
			// tile[jj*tb+ii] = yt[(ib+ii)*ldy + jb+jj]
			for ii := 0; ii < ni; ii++ {
				row := yt[(ib+ii)*ldy+jb:][:nj]
				for jj, v := range row {
					tile[jj*tb+ii] = v
				}
			}
			for jj := 0; jj < nj; jj++ {
				j := jb + jj
				var b float32
				if bias != nil {
					b = bias[j]
				}
				dst := y[j*hw+ib:][:ni]
				src := tile[jj*tb:][:ni]
				if z != nil {
					zr := z[j*hw+ib:][:ni]
					for ii, v := range src {
						v += b + zr[ii]
						if clamp {
							v = min(max(v, lo), hi)
						}
						dst[ii] = v
					}
					continue
				}
				for ii, v := range src {
					v += b
					if clamp {
						v = min(max(v, lo), hi)
					}
					dst[ii] = v
				}
			}
		}
	}
}

// transposeF32 writes the rows x cols matrix src (row stride lds)
// transposed into dst (cols x rows, row stride ldd).
func transposeF32(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	const tb = 16
	for r0 := 0; r0 < rows; r0 += tb {
		nr := min(tb, rows-r0)
		for c0 := 0; c0 < cols; c0 += tb {
			nc := min(tb, cols-c0)
			for r := r0; r < r0+nr; r++ {
				s := src[r*lds+c0:][:nc]
				for c, v := range s {
					dst[(c0+c)*ldd+r] = v
				}
			}
		}
	}
}

// gemmTInGo writes the channels [c0, c1) of the planes of x (plane floats
// apart) at the positions pos transposed into xt: xt[i*ldx+c] =
// x[c*plane+pos[i]].
func gemmTInGo(xt []float32, ldx int, x []float32, plane int, pos []int32, c0, c1 int) {
	for c := c0; c < c1; c++ {
		pl := x[c*plane:]
		for i, o := range pos {
			xt[i*ldx+c] = pl[o]
		}
	}
}
