package cpu

import (
	"fmt"
	"math"
)

// Winograd convolution F(m x m, 3x3) (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015).
//
// Each a x a input tile d (a = m+2, tiles m apart) and each 3x3 filter g are
// transformed, V = Bt d B and U = G g Gt; then for every one of the a*a
// transform positions xi the products over the input channels are one GEMM,
// M[xi] (mg x tiles) = U[xi] (mg x cg) * V[xi] (cg x tiles); finally each
// output tile is At M A. F(2x2, 3x3) does 16 multiplications for 4 outputs
// where the direct method does 36; F(4x4, 3x3) 36 for 16 outputs where the
// direct method does 144, at the price of larger transform constants and so
// a little more rounding.
//
// Work is cut into (image, group, block of tiles) items; each item
// transforms its tiles into a scratch buffer small enough to stay in cache,
// runs its a*a GEMMs and writes its output tiles, with the bias and the
// activation.

// winoKind is one F(m x m, 3x3) algorithm.
type winoKind struct {
	m, a int
	// filter1 maps 3 taps to a values (G), input1 a values to a (Bt) and
	// output1 a values to m (At); each reads src[i*ss] and writes
	// dst[i*ds].
	filter1 func(src []float32, ss int, dst []float32, ds int)
	input1  func(src []float32, ss int, dst []float32, ds int)
	output1 func(src []float32, ss int, dst []float32, ds int)
}

var (
	wino2 = &winoKind{m: 2, a: 4, filter1: winoFilter2, input1: winoInput2, output1: winoOutput2}
	wino4 = &winoKind{m: 4, a: 6, filter1: winoFilter4, input1: winoInput4, output1: winoOutput4}
)

func winoFilter2(s []float32, ss int, d []float32, ds int) {
	g0, g1, g2 := s[0], s[ss], s[2*ss]
	d[0] = g0
	d[ds] = (g0 + g1 + g2) * 0.5
	d[2*ds] = (g0 - g1 + g2) * 0.5
	d[3*ds] = g2
}

func winoInput2(s []float32, ss int, d []float32, ds int) {
	d0, d1, d2, d3 := s[0], s[ss], s[2*ss], s[3*ss]
	d[0] = d0 - d2
	d[ds] = d1 + d2
	d[2*ds] = d2 - d1
	d[3*ds] = d1 - d3
}

func winoOutput2(s []float32, ss int, d []float32, ds int) {
	s0, s1, s2, s3 := s[0], s[ss], s[2*ss], s[3*ss]
	d[0] = s0 + s1 + s2
	d[ds] = s1 - s2 - s3
}

func winoFilter4(s []float32, ss int, d []float32, ds int) {
	g0, g1, g2 := s[0], s[ss], s[2*ss]
	d[0] = g0 / 4
	d[ds] = -(g0 + g1 + g2) / 6
	d[2*ds] = -(g0 - g1 + g2) / 6
	d[3*ds] = g0/24 + g1/12 + g2/6
	d[4*ds] = g0/24 - g1/12 + g2/6
	d[5*ds] = g2
}

func winoInput4(s []float32, ss int, d []float32, ds int) {
	d0, d1, d2, d3, d4, d5 := s[0], s[ss], s[2*ss], s[3*ss], s[4*ss], s[5*ss]
	d[0] = 4*d0 - 5*d2 + d4
	d[ds] = -4*(d1+d2) + d3 + d4
	d[2*ds] = 4*(d1-d2) - d3 + d4
	d[3*ds] = 2*(d3-d1) - d2 + d4
	d[4*ds] = 2*(d1-d3) - d2 + d4
	d[5*ds] = 4*d1 - 5*d3 + d5
}

func winoOutput4(s []float32, ss int, d []float32, ds int) {
	s0, s1, s2, s3, s4, s5 := s[0], s[ss], s[2*ss], s[3*ss], s[4*ss], s[5*ss]
	p1, m1 := s1+s2, s1-s2
	p2, m2 := s3+s4, s3-s4
	d[0] = s0 + p1 + p2
	d[ds] = m1 + 2*m2
	d[2*ds] = p1 + 4*p2
	d[3*ds] = m1 + 8*m2 + s5
}

// winogradOK reports whether the Winograd algorithms compute p: 3x3
// kernels, stride and dilation 1, at least two input channels per group.
func winogradOK(p Conv2DParams) bool {
	return p.KH == 3 && p.KW == 3 && p.StrideH == 1 && p.StrideW == 1 && p.DilH == 1 && p.DilW == 1 && p.C/p.Group >= 2
}

func winoKindOf(a ConvAlgo) *winoKind {
	switch a {
	case ConvWinograd2:
		return wino2
	case ConvWinograd4:
		return wino4
	}
	return nil
}

// WinogradFilter is the weights of a convolution transformed for one of the
// Winograd algorithms. Make it once with NewWinogradFilter and reuse it
// while the weights stay the same; it is read-only and safe to share.
type WinogradFilter struct {
	algo        ConvAlgo
	kind        *winoKind
	m, c, group int
	// u[((g*a*a + xi)*mg + om)*cg + c] is position xi of the transform of
	// the filter of output channel g*mg+om and input channel c of group g.
	u []float32
}

// Algo returns the algorithm the filter was transformed for.
func (f *WinogradFilter) Algo() ConvAlgo { return f.algo }

// NewWinogradFilter transforms the weights w ([M, C/Group, 3, 3]) of the
// convolution p for algorithm a (ConvWinograd2 or ConvWinograd4). It fails,
// wrapping ErrInvalidConv, if p is not valid, a is not a Winograd algorithm
// that computes p, or w is too short.
func NewWinogradFilter(a ConvAlgo, p Conv2DParams, w []float32) (*WinogradFilter, error) {
	k := winoKindOf(a)
	if k == nil {
		return nil, fmt.Errorf("%w: %q is not a Winograd algorithm", ErrInvalidConv, a)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if !winogradOK(p) {
		return nil, fmt.Errorf("%w: %s needs a 3x3 kernel, stride and dilation 1 and two or more channels per group: %+v", ErrInvalidConv, a, p)
	}
	cg, mg := p.C/p.Group, p.M/p.Group
	if len(w) < p.M*cg*9 {
		return nil, fmt.Errorf("%w: %d weights, want %d", ErrInvalidConv, len(w), p.M*cg*9)
	}
	aa := k.a * k.a
	f := &WinogradFilter{algo: a, kind: k, m: p.M, c: p.C, group: p.Group, u: make([]float32, p.M*cg*aa)}
	ParallelFor(p.M, max(1, 4096/(cg*aa)), func(lo, hi int) {
		var tmp [6 * 3]float32
		var u [6 * 6]float32
		for oc := lo; oc < hi; oc++ {
			g, om := oc/mg, oc%mg
			for c := 0; c < cg; c++ {
				src := w[(oc*cg+c)*9 : (oc*cg+c)*9+9]
				for j := 0; j < 3; j++ { // columns: tmp (a x 3) = G g
					k.filter1(src[j:], 3, tmp[j:], 3)
				}
				for i := 0; i < k.a; i++ { // rows: u (a x a) = tmp Gt
					k.filter1(tmp[i*3:], 1, u[i*k.a:], 1)
				}
				for xi := 0; xi < aa; xi++ {
					f.u[((g*aa+xi)*mg+om)*cg+c] = u[xi]
				}
			}
		}
	})
	return f, nil
}

// winoBudget is how many floats the transformed tiles and products of one
// work item should hold, so that they stay in L2; winoMinTiles is the
// fewest tiles an item gets, so that the GEMMs stay efficient.
var (
	winoBudget   = 1 << 18
	winoMinTiles = 32
)

var (
	winoVPool floatPool
	winoMPool floatPool
)

// Conv2DWinograd is Conv2D computed with the Winograd algorithm of f, whose
// weights it uses (f must have been made for a convolution with p's M, C and
// Group). It panics if p is not valid, f does not fit p, or a slice is too
// short.
func Conv2DWinograd(p Conv2DParams, x []float32, f *WinogradFilter, bias, y []float32) {
	if f == nil || f.kind == nil {
		panic("cpu: Conv2DWinograd: nil filter")
	}
	checkConvIO(p, x, bias, y)
	if !winogradOK(p) || f.m != p.M || f.c != p.C || f.group != p.Group {
		panic(fmt.Sprintf("cpu: Conv2DWinograd: a filter for M=%d C=%d Group=%d does not fit %+v", f.m, f.c, f.group, p))
	}
	winograd(p, x, f, bias, y)
}

// winograd computes the convolution p with the transformed filter f.
func winograd(p Conv2DParams, x []float32, f *WinogradFilter, bias, y []float32) {
	k := f.kind
	m, a := k.m, k.a
	aa := a * a
	oh, ow := p.OutH(), p.OutW()
	th, tw := (oh+m-1)/m, (ow+m-1)/m
	tiles := th * tw
	cg, mg := p.C/p.Group, p.M/p.Group
	hw := p.H * p.W
	nt := Threads()
	ng := p.N * p.Group

	tb := min(tiles, max(winoMinTiles, winoBudget/(aa*(cg+mg))))
	blocks := (tiles + tb - 1) / tb
	if ng*blocks < nt {
		// Smaller blocks, so that every thread gets one, while they stay
		// large enough for the GEMM.
		want := (nt + ng - 1) / ng
		if b := min(want, max(1, tiles/16)); b > blocks {
			blocks = b
		}
	}
	tb = (tiles + blocks - 1) / blocks
	blocks = (tiles + tb - 1) / tb
	items := ng * blocks
	parallelItems := items >= nt
	gemmThreads := 1
	if !parallelItems {
		gemmThreads = nt
	}

	lo, hi := float32(math.Inf(-1)), float32(math.Inf(1))
	switch p.Act {
	case ActRelu:
		lo = 0
	case ActClip:
		lo, hi = p.ActMin, p.ActMax
	}

	run := func(item int, vbuf, mbuf []float32) {
		blk := item % blocks
		g := item / blocks % p.Group
		n := item / blocks / p.Group
		t0 := blk * tb
		t1 := min(t0+tb, tiles)
		nb := t1 - t0
		vbuf, mbuf = vbuf[:aa*cg*nb], mbuf[:aa*mg*nb]
		xg := x[(n*p.C+g*cg)*hw:]
		var d, tmp, v [36]float32
		for c := 0; c < cg; c++ {
			xc := xg[c*hw : c*hw+hw]
			for t := t0; t < t1; t++ {
				y0 := (t/tw)*m - p.PadTop
				x0 := (t%tw)*m - p.PadLeft
				if y0 >= 0 && x0 >= 0 && y0+a <= p.H && x0+a <= p.W {
					for i := 0; i < a; i++ {
						copy(d[i*a:i*a+a], xc[(y0+i)*p.W+x0:])
					}
				} else {
					for i := 0; i < a; i++ {
						row := d[i*a : i*a+a]
						iy := y0 + i
						if iy < 0 || iy >= p.H {
							clear(row)
							continue
						}
						src := xc[iy*p.W : iy*p.W+p.W]
						for j := range row {
							if ix := x0 + j; ix >= 0 && ix < p.W {
								row[j] = src[ix]
							} else {
								row[j] = 0
							}
						}
					}
				}
				for j := 0; j < a; j++ { // columns: tmp = Bt d
					k.input1(d[j:], a, tmp[j:], a)
				}
				for i := 0; i < a; i++ { // rows: v = tmp B
					k.input1(tmp[i*a:], 1, v[i*a:], 1)
				}
				col := vbuf[c*nb+t-t0:]
				for xi := 0; xi < aa; xi++ {
					col[xi*cg*nb] = v[xi]
				}
			}
		}
		ug := f.u[g*aa*mg*cg:]
		for xi := 0; xi < aa; xi++ {
			sgemm(false, false, mg, nb, cg, 1, ug[xi*mg*cg:], cg, vbuf[xi*cg*nb:], nb, 0, mbuf[xi*mg*nb:], nb, gemmThreads)
		}
		var s, out [36]float32
		for om := 0; om < mg; om++ {
			oc := g*mg + om
			var b float32
			if bias != nil {
				b = bias[oc]
			}
			yo := y[(n*p.M+oc)*oh*ow : (n*p.M+oc+1)*oh*ow]
			col := mbuf[om*nb:]
			for t := t0; t < t1; t++ {
				for xi := 0; xi < aa; xi++ {
					s[xi] = col[xi*mg*nb+t-t0]
				}
				for j := 0; j < a; j++ { // columns: tmp (m x a) = At s
					k.output1(s[j:], a, tmp[j:], a)
				}
				for i := 0; i < m; i++ { // rows: out (m x m) = tmp A
					k.output1(tmp[i*a:], 1, out[i*m:], 1)
				}
				oy0, ox0 := (t/tw)*m, (t%tw)*m
				rows, cols := min(m, oh-oy0), min(m, ow-ox0)
				for i := 0; i < rows; i++ {
					dst := yo[(oy0+i)*ow+ox0 : (oy0+i)*ow+ox0+cols]
					for j := range dst {
						dst[j] = min(max(out[i*m+j]+b, lo), hi)
					}
				}
			}
		}
	}
	work := func(i0, i1 int) {
		vp := winoVPool.get(aa * cg * tb)
		mp := winoMPool.get(aa * mg * tb)
		for it := i0; it < i1; it++ {
			run(it, *vp, *mp)
		}
		winoVPool.put(vp)
		winoMPool.put(mp)
	}
	if parallelItems {
		ParallelFor(items, (items+nt-1)/nt, work)
	} else {
		work(0, items)
	}
}
