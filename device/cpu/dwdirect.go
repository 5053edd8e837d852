package cpu

import (
	"sync"
)

// dwDirectOK reports whether dwDirect computes p: a depthwise convolution
// with one output channel per group (C == Group == M), 3x3 taps without
// dilation, and either stride 1 with an output of the input's size (pads
// adding up to 2 on each axis) or stride 2 on both axes.
func dwDirectOK(p Conv2DParams) bool {
	if p.Group != p.C || p.M != p.C || p.KH != 3 || p.KW != 3 || p.DilH != 1 || p.DilW != 1 {
		return false
	}
	switch {
	case p.StrideH == 1 && p.StrideW == 1:
		return p.PadTop+p.PadBottom == 2 && p.PadLeft+p.PadRight == 2
	case p.StrideH == 2 && p.StrideW == 2:
		return p.PadLeft <= 2 && p.PadTop <= 2
	}
	return false
}

// dwGeom is what dwDirect precomputes for one geometry (size, stride and
// pads), shared by every plane and every call: the masks of the AVX-512
// kernels' loads and stores, and for stride 2 the input rows of each output
// row.
type dwGeom struct {
	// tab holds 16 uint16 per vector (see gen_dwdirect_amd64.go).
	tab  []uint16
	nvec int
	// rows (stride 2): per output row, the byte offsets of its three
	// input rows, -1 for rows in the pads; zero is a row of zeros with
	// room for PadLeft floats before it.
	rows []int64
	zero []float32
}

type dwGeomKey struct{ h, w, stride, pt, pl, pb, pr int }

var dwGeoms sync.Map // dwGeomKey -> *dwGeom

func dwGeometry(p Conv2DParams) *dwGeom {
	key := dwGeomKey{p.H, p.W, p.StrideH, p.PadTop, p.PadLeft, p.PadBottom, p.PadRight}
	if g, ok := dwGeoms.Load(key); ok {
		return g.(*dwGeom)
	}
	var g *dwGeom
	if p.StrideH == 1 {
		g = flatGeom(p)
	} else {
		g = rowsGeom(p)
	}
	v, _ := dwGeoms.LoadOrStore(key, g)
	return v.(*dwGeom)
}

// flatGeom makes the table of the stride-1 kernel: the plane is one run of
// H*W outputs cut into vectors of 16; lane o's tap (kh, kw) reads input
// row o/W + kh - PadTop, column o%W + kw - PadLeft, if both are inside.
func flatGeom(p Conv2DParams) *dwGeom {
	hw := p.H * p.W
	nvec := (hw + 15) / 16
	tab := make([]uint16, 16*nvec)
	for v := range nvec {
		e := tab[16*v : 16*v+16]
		for l := range 16 {
			o := 16*v + l
			if o >= hw {
				continue
			}
			e[9] |= 1 << l
			y, x := o/p.W, o%p.W
			for kh := range 3 {
				iy := y + kh - p.PadTop
				if iy < 0 || iy >= p.H {
					continue
				}
				for kw := range 3 {
					if ix := x + kw - p.PadLeft; ix >= 0 && ix < p.W {
						e[3*kh+kw] |= 1 << l
					}
				}
			}
		}
		full := uint16(1)
		for _, m := range e[:10] {
			if m != 0xFFFF {
				full = 0
			}
		}
		e[10] = full
	}
	return &dwGeom{tab: tab, nvec: nvec}
}

// rowsGeom makes the tables of the stride-2 kernel.
func rowsGeom(p Conv2DParams) *dwGeom {
	oh, ow := p.OutH(), p.OutW()
	nvec := (ow + 15) / 16
	tab := make([]uint16, 16*nvec)
	// Lane j of the load at float offset base (from column -PadLeft).
	mask := func(base int) uint16 {
		var m uint16
		for j := range 16 {
			if c := base + j - p.PadLeft; c >= 0 && c < p.W {
				m |= 1 << j
			}
		}
		return m
	}
	for v := range nvec {
		e := tab[16*v : 16*v+16]
		e[0], e[1], e[2], e[3] = mask(32*v), mask(32*v+16), mask(32*v+2), mask(32*v+18)
		// the unshifted loads of dwRowsS2P1RunAVX512 (PadLeft 1)
		e[5], e[6] = mask(32*v+p.PadLeft), mask(32*v+16+p.PadLeft)
		for j := range 16 {
			if 16*v+j < ow {
				e[4] |= 1 << j
			}
		}
	}
	rows := make([]int64, 3*oh)
	for y := range oh {
		for kh := range 3 {
			iy := 2*y + kh - p.PadTop
			rows[3*y+kh] = -1
			if iy >= 0 && iy < p.H {
				rows[3*y+kh] = int64(iy * p.W * 4)
			}
		}
	}
	return &dwGeom{tab: tab, nvec: nvec, rows: rows, zero: make([]float32, p.PadLeft+p.W)}
}

// dwDirect computes the depthwise convolutions of dwDirectOK with the
// AVX-512 kernels of dwdirect_amd64.s, reading the input planes in place:
// the pads are masked lanes, not a zero-bordered copy. Bias and ReLU or
// clip are applied in registers before the one store. Without AVX-512 it
// runs depthwise.
func dwDirect(p Conv2DParams, x, w, bias, y []float32) {
	if !dwDirectAsm() {
		depthwise(p, x, w, bias, y)
		return
	}
	lo, hi := actBounds(p)
	oh, ow := p.OutH(), p.OutW()
	planes := p.N * p.C
	grain := max(1, (1<<14)/max(1, oh*ow*9))
	dc := dwCalls.Get().(*dwCall)
	*dc = dwCall{p: p, x: x, w: w, bias: bias, y: y, lo: lo, hi: hi, g: dwGeometry(p), fn: dc.fn}
	ParallelFor(planes, grain, dc.fn)
	*dc = dwCall{fn: dc.fn} // drop the references to the caller's memory
	dwCalls.Put(dc)
}

// dwCall is one dwDirect call, pooled with the function it hands to the
// worker pool (made once per dwCall, so that a call allocates nothing).
type dwCall struct {
	p             Conv2DParams
	x, w, bias, y []float32
	lo, hi        float32
	g             *dwGeom
	fn            func(lo, hi int)
}

var dwCalls = sync.Pool{New: func() any {
	dc := &dwCall{}
	dc.fn = dc.planes
	return dc
}}

// biasOf returns channel c's bias (0 without one).
func (dc *dwCall) biasOf(c int) float32 {
	if dc.bias == nil {
		return 0
	}
	return dc.bias[c]
}

// planes computes the output planes [lo0, hi0).
func (dc *dwCall) planes(lo0, hi0 int) {
	p, x, w, y, g, lo, hi := &dc.p, dc.x, dc.w, dc.y, dc.g, dc.lo, dc.hi
	oh, ow := p.OutH(), p.OutW()
	hw, ohw := p.H*p.W, oh*ow
	off := -(p.PadTop*p.W + p.PadLeft)
	if p.StrideH == 1 && dwPairs && dwRuns {
		// runs of plane pairs within one image, one kernel call each
		for pl := lo0; pl+1 < hi0; {
			c := pl % p.C
			n := min(hi0-pl, p.C-c) / 2
			if n == 0 {
				// the image's last channel: the loop below takes it
				break
			}
			var b []float32
			if dc.bias != nil {
				b = dc.bias[c : c+2*n]
			}
			dwFlatS1Run(x[pl*hw:(pl+2*n)*hw], hw, p.W, off, w[9*c:9*(c+2*n)], b, y[pl*ohw:(pl+2*n)*ohw], g, n, lo, hi)
			pl += 2 * n
			lo0 = pl
		}
	}
	if p.StrideH != 1 && dwRuns {
		// runs of planes within one image, one kernel call each
		for pl := lo0; pl < hi0; {
			c := pl % p.C
			n := min(hi0-pl, p.C-c)
			var b []float32
			if dc.bias != nil {
				b = dc.bias[c : c+n]
			}
			dwRowsS2Run(x[pl*hw:(pl+n)*hw], hw, p.PadLeft, w[9*c:9*(c+n)], b, y[pl*ohw:(pl+n)*ohw], oh, ow, g, n, lo, hi)
			pl += n
		}
		return
	}
	for pl := lo0; pl < hi0; pl++ {
		c := pl % p.C
		in := x[pl*hw : pl*hw+hw]
		dst := y[pl*ohw : pl*ohw+ohw]
		wt := w[9*c : 9*c+9]
		switch {
		case p.StrideH == 1 && dwPairs && pl+1 < hi0:
			// two planes per pass: the tap masks load once for both
			c1 := (pl + 1) % p.C
			dwFlatS1x2(in, x[(pl+1)*hw:(pl+2)*hw], p.W, off, wt, w[9*c1:9*c1+9], dst, y[(pl+1)*ohw:(pl+2)*ohw], g,
				dc.biasOf(c), dc.biasOf(c1), lo, hi)
			pl++
		case p.StrideH == 1:
			dwFlatS1(in, p.W, off, wt, dst, g, dc.biasOf(c), lo, hi)
		default:
			dwRowsS2(in, p.PadLeft, wt, dst, oh, ow, g, dc.biasOf(c), lo, hi)
		}
	}
}

// dwPairs makes dwDirect's stride-1 kernel run two planes per pass (tests
// and benchmarks turn it off to compare).
var dwPairs = true

// dwS2P1 makes dwDirect's stride-2 runs with a left pad of one column use
// dwRowsS2P1RunAVX512 (half the loads, none shifted by the pad); tests and
// benchmarks turn it off to compare with dwRowsS2RunAVX512.
var dwS2P1 = true

// dwRuns makes dwDirect run many planes per kernel call: the stride-1
// pairs (dwFlatS1Run) and the stride-2 planes (dwRowsS2Run); tests and
// benchmarks turn it off to compare with a call per pair or plane.
var dwRuns = true

// actBounds returns the clamp of p.Act: ReLU's [0, +Inf), clip's
// [ActMin, ActMax], or everything.
func actBounds(p Conv2DParams) (lo, hi float32) {
	lo, hi = NoClamp()
	switch p.Act {
	case ActRelu:
		lo = 0
	case ActClip:
		lo, hi = p.ActMin, p.ActMax
	}
	return lo, hi
}
