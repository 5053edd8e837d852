package cpu

import (
	"errors"
	"fmt"
	"sync"
)

// ErrInvalidConv is wrapped by the errors of Conv2DParams.Validate.
var ErrInvalidConv = errors.New("cpu: invalid convolution")

// Activation is an element-wise function fused into a kernel's output.
type Activation int

const (
	// ActNone leaves the output as computed.
	ActNone Activation = iota
	// ActRelu is max(x, 0).
	ActRelu
	// ActClip is min(max(x, ActMin), ActMax), e.g. ReLU6.
	ActClip
)

// Conv2DParams describes one 2-D convolution in NCHW layout.
type Conv2DParams struct {
	N, C, H, W                           int // input
	M, KH, KW                            int // output channels, kernel size (weights are [M, C/Group, KH, KW])
	Group                                int
	StrideH, StrideW, DilH, DilW         int
	PadTop, PadLeft, PadBottom, PadRight int
	// Act is applied after the bias; ActMin and ActMax bound ActClip.
	Act            Activation
	ActMin, ActMax float32
}

// outSize is the output extent of one spatial axis, or <= 0 when the
// kernel does not fit.
func outSize(in, pad, k, dil, stride int) int {
	span := in + pad - dil*(k-1)
	if span <= 0 || stride <= 0 {
		return 0
	}
	return (span-1)/stride + 1
}

// OutH returns the output height.
func (p Conv2DParams) OutH() int {
	return outSize(p.H, p.PadTop+p.PadBottom, p.KH, p.DilH, p.StrideH)
}

// OutW returns the output width.
func (p Conv2DParams) OutW() int {
	return outSize(p.W, p.PadLeft+p.PadRight, p.KW, p.DilW, p.StrideW)
}

// Validate reports, wrapping ErrInvalidConv, why p does not describe a
// convolution Conv2D can compute: a non-positive size, stride, dilation or
// group count, a negative pad, channels not divisible by the groups, an
// empty output, or an unknown activation.
func (p Conv2DParams) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"N", p.N}, {"C", p.C}, {"H", p.H}, {"W", p.W}, {"M", p.M}, {"KH", p.KH}, {"KW", p.KW},
		{"Group", p.Group}, {"StrideH", p.StrideH}, {"StrideW", p.StrideW}, {"DilH", p.DilH}, {"DilW", p.DilW},
	} {
		if f.v <= 0 {
			return fmt.Errorf("%w: %s = %d, must be positive", ErrInvalidConv, f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"PadTop", p.PadTop}, {"PadLeft", p.PadLeft}, {"PadBottom", p.PadBottom}, {"PadRight", p.PadRight}} {
		if f.v < 0 {
			return fmt.Errorf("%w: %s = %d, must not be negative", ErrInvalidConv, f.name, f.v)
		}
	}
	if p.C%p.Group != 0 {
		return fmt.Errorf("%w: C = %d is not a multiple of Group = %d", ErrInvalidConv, p.C, p.Group)
	}
	if p.M%p.Group != 0 {
		return fmt.Errorf("%w: M = %d is not a multiple of Group = %d", ErrInvalidConv, p.M, p.Group)
	}
	if p.OutH() <= 0 || p.OutW() <= 0 {
		return fmt.Errorf("%w: output is %dx%d for a %dx%d input, kernel %dx%d, dilation %dx%d and pads %d,%d,%d,%d",
			ErrInvalidConv, p.OutH(), p.OutW(), p.H, p.W, p.KH, p.KW, p.DilH, p.DilW, p.PadTop, p.PadLeft, p.PadBottom, p.PadRight)
	}
	switch p.Act {
	case ActNone, ActRelu:
	case ActClip:
		if !(p.ActMin <= p.ActMax) {
			return fmt.Errorf("%w: clip range [%g, %g] is empty", ErrInvalidConv, p.ActMin, p.ActMax)
		}
	default:
		return fmt.Errorf("%w: unknown activation %d", ErrInvalidConv, p.Act)
	}
	if p.N*p.C*p.H*p.W < 0 || p.M*(p.C/p.Group)*p.KH*p.KW < 0 || p.N*p.M*p.OutH()*p.OutW() < 0 {
		return fmt.Errorf("%w: sizes overflow int", ErrInvalidConv)
	}
	return nil
}

// Conv2D computes y = conv(x, w) + bias (bias may be nil); y has shape [N, M, OutH, OutW].
//
// x is [N, C, H, W], w is [M, C/Group, KH, KW] and bias, when not nil, [M];
// p.Act is applied last. 1x1 convolutions with stride 1 and no padding are a
// GEMM on x as it is; depthwise ones (C/Group == 1) run a direct kernel;
// most other stride-1 ones are an implicit GEMM on a padded copy of x; the
// rest go through im2col tiles and Sgemm. Work is spread over images,
// groups and spatial tiles, or inside the GEMM when those are too few.
// Conv2D panics if p is not valid (see Validate) or a slice is too short.
func Conv2D(p Conv2DParams, x, w, bias, y []float32) {
	if err := p.Validate(); err != nil {
		panic(err)
	}
	oh, ow := p.OutH(), p.OutW()
	cg := p.C / p.Group
	need := func(name string, s []float32, n int) {
		if len(s) < n {
			panic(fmt.Sprintf("cpu: Conv2D: len(%s) = %d < %d", name, len(s), n))
		}
	}
	need("x", x, p.N*p.C*p.H*p.W)
	need("w", w, p.M*cg*p.KH*p.KW)
	need("y", y, p.N*p.M*oh*ow)
	if bias != nil {
		need("bias", bias, p.M)
	}
	if cg == 1 {
		if dwDirectOK(p) && dwDirectAsm() {
			dwDirect(p, x, w, bias, y)
			return
		}
		depthwise(p, x, w, bias, y)
		return
	}
	if implicitOK(p) {
		convImplicit(p, x, w, bias, y)
		return
	}
	convGemm(p, x, w, bias, y)
}

// im2colTile is how many floats one im2col tile should hold: a few hundred
// KiB, so that the tile stays in L2 while the GEMM packs it.
var im2colTile = 1 << 17

var im2colPool floatPool

// convGemm computes a convolution as GEMMs: per image, group and tile of
// output positions, Y[mg x tile] = W[mg x K] * col[K x tile] with
// K = cg*KH*KW; col is x itself for pointwise convolutions.
func convGemm(p Conv2DParams, x, w, bias, y []float32) {
	convGemmBlocked(p, Blocking{}, x, w, bias, y)
}

// convGemmBlocked is convGemm with the GEMM cache blocking bl (the zero
// Blocking is the default one).
func convGemmBlocked(p Conv2DParams, bl Blocking, x, w, bias, y []float32) {
	oh, ow := p.OutH(), p.OutW()
	ohw := oh * ow
	kk := p.C / p.Group * p.KH * p.KW
	pointwise := p.KH == 1 && p.KW == 1 && p.StrideH == 1 && p.StrideW == 1 &&
		p.PadTop == 0 && p.PadLeft == 0 && p.PadBottom == 0 && p.PadRight == 0

	nt := Threads()
	ng := p.N * p.Group
	tn := max(256, im2colTile/kk)
	tiles := (ohw + tn - 1) / tn
	parallelItems := ng*tiles >= 4*nt || (ng*tiles)%nt == 0 && ng*tiles >= nt
	if !parallelItems {
		// Cut the positions into more tiles so the items spread evenly,
		// as long as the tiles stay wide enough for the GEMM.
		for t := tiles + 1; ohw/t >= 64; t++ {
			if (ng*t)%nt == 0 {
				tiles, parallelItems = t, true
				break
			}
		}
	}
	tn = (ohw + tiles - 1) / tiles
	if tiles > 1 && tn%16 != 0 && tn > 16 {
		tn = (tn + 15) / 16 * 16
		tiles = (ohw + tn - 1) / tn
	}
	items := ng * tiles
	gemmThreads := 1
	if !parallelItems || nt == 1 {
		gemmThreads = nt
	}
	colSize := 0
	if !pointwise {
		colSize = kk * tn
	}
	j := convGemmJobs.Get().(*convGemmJob)
	j.p, j.bl, j.x, j.w, j.bias, j.y = p, bl, x, w, bias, y
	j.pointwise, j.tiles, j.tn, j.gemmThreads, j.colSize = pointwise, tiles, tn, gemmThreads, colSize
	if !parallelItems {
		j.items(0, items)
	} else {
		ParallelFor(items, (items+nt-1)/nt, j.fn)
	}
	j.x, j.w, j.bias, j.y = nil, nil, nil, nil // drop the caller's memory
	convGemmJobs.Put(j)
}

// convGemmJob is one convGemmBlocked call, pooled with the function it
// hands to the worker pool (made once per job, so that a call allocates
// nothing).
type convGemmJob struct {
	p             Conv2DParams
	bl            Blocking
	x, w, bias, y []float32
	pointwise     bool
	tiles, tn     int
	gemmThreads   int
	colSize       int
	fn            func(lo, hi int)
}

var convGemmJobs = sync.Pool{New: func() any {
	j := &convGemmJob{}
	j.fn = j.items
	return j
}}

// items computes the items [lo, hi) (image, group, tile of output
// positions) with an im2col buffer of its own.
func (j *convGemmJob) items(lo, hi int) {
	var colp *[]float32
	var col []float32
	if j.colSize > 0 {
		colp = im2colPool.get(j.colSize)
		col = *colp
	}
	for it := lo; it < hi; it++ {
		j.item(it, col)
	}
	if colp != nil {
		im2colPool.put(colp)
	}
}

// item computes one item's GEMM and epilogue.
func (j *convGemmJob) item(item int, col []float32) {
	p := &j.p
	oh, ow := p.OutH(), p.OutW()
	ohw := oh * ow
	cg, mg := p.C/p.Group, p.M/p.Group
	kk := cg * p.KH * p.KW
	hw := p.H * p.W
	tile := item % j.tiles
	g := item / j.tiles % p.Group
	n := item / j.tiles / p.Group
	j0 := tile * j.tn
	j1 := min(j0+j.tn, ohw)
	wg := j.w[g*mg*kk:]
	yg := j.y[(n*p.M+g*mg)*ohw+j0:]
	if j.pointwise {
		xg := j.x[(n*p.C+g*cg)*hw+j0:]
		sgemmBlocked(j.bl, false, false, mg, j1-j0, kk, 1, wg, kk, xg, hw, 0, yg, ohw, j.gemmThreads)
	} else {
		c := col[:kk*(j1-j0)]
		im2col(*p, j.x[(n*p.C+g*cg)*hw:], c, j0, j1)
		sgemmBlocked(j.bl, false, false, mg, j1-j0, kk, 1, wg, kk, c, j1-j0, 0, yg, ohw, j.gemmThreads)
	}
	var bg []float32
	if j.bias != nil {
		bg = j.bias[g*mg : g*mg+mg]
	}
	epilogue(*p, yg, ohw, mg, j1-j0, bg)
}

// epilogue adds the bias of each of the rows rows of y (row stride ld,
// cols wide) and applies p.Act.
func epilogue(p Conv2DParams, y []float32, ld, rows, cols int, bias []float32) {
	if bias == nil && p.Act == ActNone {
		return
	}
	lo, hi := actBounds(p)
	for r := 0; r < rows; r++ {
		var b float32
		if bias != nil {
			b = bias[r]
		}
		row := y[r*ld : r*ld+cols]
		if biasClampRow(row, b, lo, hi) {
			continue
		}
		switch p.Act {
		case ActNone:
			for i := range row {
				row[i] += b
			}
		case ActRelu:
			for i, v := range row {
				row[i] = max(v+b, 0)
			}
		case ActClip:
			lo, hi := p.ActMin, p.ActMax
			for i, v := range row {
				row[i] = min(max(v+b, lo), hi)
			}
		}
	}
}

// im2col writes the columns [j0, j1) (output positions, row-major over
// OutH x OutW) of the im2col matrix of one image and group, x being the
// group's first input channel: col[r*(j1-j0) + j-j0] for r = (c*KH+kh)*KW+kw.
func im2col(p Conv2DParams, x, col []float32, j0, j1 int) {
	ow := p.OutW()
	cg := p.C / p.Group
	hw := p.H * p.W
	tn := j1 - j0
	r := 0
	for c := 0; c < cg; c++ {
		xc := x[c*hw : c*hw+hw]
		for kh := 0; kh < p.KH; kh++ {
			for kw := 0; kw < p.KW; kw++ {
				dst := col[r*tn : r*tn+tn]
				r++
				off := kw*p.DilW - p.PadLeft
				// Output columns whose input column is inside the image:
				// [lo, hi).
				lo := 0
				if off < 0 {
					lo = (-off + p.StrideW - 1) / p.StrideW
				}
				hi := 0
				if p.W-1-off >= 0 {
					hi = min(ow, (p.W-1-off)/p.StrideW+1)
				}
				hi = max(hi, lo)
				j := j0
				for j < j1 {
					oy, ox := j/ow, j%ow
					run := min(ow-ox, j1-j)
					d := dst[j-j0 : j-j0+run]
					j += run
					ih := oy*p.StrideH - p.PadTop + kh*p.DilH
					if ih < 0 || ih >= p.H {
						clear(d)
						continue
					}
					src := xc[ih*p.W : ih*p.W+p.W]
					a, b := max(lo, ox), min(hi, ox+run)
					if a >= b {
						clear(d)
						continue
					}
					clear(d[:a-ox])
					clear(d[b-ox:])
					if p.StrideW == 1 {
						copy(d[a-ox:b-ox], src[a+off:b+off])
						continue
					}
					s := a*p.StrideW + off
					if p.StrideW == 2 {
						active.gather2(d[a-ox:b-ox], src[s:])
						continue
					}
					for q := a - ox; q < b-ox; q++ {
						d[q] = src[s]
						s += p.StrideW
					}
				}
			}
		}
	}
}
