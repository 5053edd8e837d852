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
	// filter1 maps 3 taps to a values (G), reading src[i*ss] and writing
	// dst[i*ds].
	filter1 func(src []float32, ss int, dst []float32, ds int)
	// input and output apply Bt (a rows to a) and At (a rows to m)
	// element-wise over rows of equal length: one element per tile.
	input  func(src, dst *rows)
	output func(src, dst *rows)
	// inCoef (a x a) and outCoef (m x a) are Bt and At as matrices, for
	// the vector kernels.
	inCoef, outCoef []float32
}

// applyInput sets dst = Bt src over rows of equal length.
func (k *winoKind) applyInput(src, dst *rows) { k.apply(k.inCoef, k.a, k.input, src, dst) }

// applyOutput sets dst = At src over rows of equal length.
func (k *winoKind) applyOutput(src, dst *rows) { k.apply(k.outCoef, k.m, k.output, src, dst) }

// apply runs the vector kernel where there is one and the Go transform f
// on the rest of the rows.
func (k *winoKind) apply(coef []float32, nd int, f func(src, dst *rows), src, dst *rows) {
	done := winoRowsAsm(coef, k.a, nd, src, dst)
	if done == len(src[0]) {
		return
	}
	if done == 0 {
		f(src, dst)
		return
	}
	var s, d rows
	for r := 0; r < k.a; r++ {
		s[r] = src[r][done:]
	}
	for r := 0; r < nd; r++ {
		d[r] = dst[r][done:]
	}
	f(&s, &d)
}

// rows is up to six equally long rows of a transform, one element per tile.
type rows [6][]float32

var (
	wino2 = &winoKind{m: 2, a: 4, filter1: winoFilter2, input: winoInput2, output: winoOutput2,
		inCoef: []float32{
			1, 0, -1, 0,
			0, 1, 1, 0,
			0, -1, 1, 0,
			0, 1, 0, -1,
		},
		outCoef: []float32{
			1, 1, 1, 0,
			0, 1, -1, -1,
		},
	}
	wino4 = &winoKind{m: 4, a: 6, filter1: winoFilter4, input: winoInput4, output: winoOutput4,
		inCoef: []float32{
			4, 0, -5, 0, 1, 0,
			0, -4, -4, 1, 1, 0,
			0, 4, -4, -1, 1, 0,
			0, -2, -1, 2, 1, 0,
			0, 2, -1, -2, 1, 0,
			0, 4, 0, -5, 0, 1,
		},
		outCoef: []float32{
			1, 1, 1, 1, 1, 0,
			0, 1, -1, 2, -2, 0,
			0, 1, 1, 4, 4, 0,
			0, 1, -1, 8, -8, 1,
		},
	}
)

func winoFilter2(s []float32, ss int, d []float32, ds int) {
	g0, g1, g2 := s[0], s[ss], s[2*ss]
	d[0] = g0
	d[ds] = (g0 + g1 + g2) * 0.5
	d[2*ds] = (g0 - g1 + g2) * 0.5
	d[3*ds] = g2
}

func winoInput2(s, d *rows) {
	n := len(s[0])
	s0, s1, s2, s3 := s[0][:n], s[1][:n], s[2][:n], s[3][:n]
	d0, d1, d2, d3 := d[0][:n], d[1][:n], d[2][:n], d[3][:n]
	for i := range n {
		x0, x1, x2, x3 := s0[i], s1[i], s2[i], s3[i]
		d0[i] = x0 - x2
		d1[i] = x1 + x2
		d2[i] = x2 - x1
		d3[i] = x1 - x3
	}
}

func winoOutput2(s, d *rows) {
	n := len(s[0])
	s0, s1, s2, s3 := s[0][:n], s[1][:n], s[2][:n], s[3][:n]
	d0, d1 := d[0][:n], d[1][:n]
	for i := range n {
		x1, x2 := s1[i], s2[i]
		d0[i] = s0[i] + x1 + x2
		d1[i] = x1 - x2 - s3[i]
	}
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

func winoInput4(s, d *rows) {
	n := len(s[0])
	s0, s1, s2, s3, s4, s5 := s[0][:n], s[1][:n], s[2][:n], s[3][:n], s[4][:n], s[5][:n]
	d0, d1, d2, d3, d4, d5 := d[0][:n], d[1][:n], d[2][:n], d[3][:n], d[4][:n], d[5][:n]
	for i := range n {
		x0, x1, x2, x3, x4, x5 := s0[i], s1[i], s2[i], s3[i], s4[i], s5[i]
		d0[i] = 4*x0 - 5*x2 + x4
		d1[i] = -4*(x1+x2) + x3 + x4
		d2[i] = 4*(x1-x2) - x3 + x4
		d3[i] = 2*(x3-x1) - x2 + x4
		d4[i] = 2*(x1-x3) - x2 + x4
		d5[i] = 4*x1 - 5*x3 + x5
	}
}

func winoOutput4(s, d *rows) {
	n := len(s[0])
	s0, s1, s2, s3, s4, s5 := s[0][:n], s[1][:n], s[2][:n], s[3][:n], s[4][:n], s[5][:n]
	d0, d1, d2, d3 := d[0][:n], d[1][:n], d[2][:n], d[3][:n]
	for i := range n {
		p1, m1 := s1[i]+s2[i], s1[i]-s2[i]
		p2, m2 := s3[i]+s4[i], s3[i]-s4[i]
		d0[i] = s0[i] + p1 + p2
		d1[i] = m1 + 2*m2
		d2[i] = p1 + 4*p2
		d3[i] = m1 + 8*m2 + s5[i]
	}
}

// winoGatherGo is winoGather in Go.
func winoGatherGo(d, src []float32, base []int32, off int) {
	d = d[:len(base)]
	for i, b := range base {
		if b >= 0 {
			d[i] = src[int(b)+off]
		}
	}
}

// winoScatterGo is winoScatter in Go.
func winoScatterGo(dst, s []float32, obase []int32, off int, b, lo, hi float32) {
	s = s[:len(obase)]
	for i, o := range obase {
		if o >= 0 {
			dst[int(o)+off] = min(max(s[i]+b, lo), hi)
		}
	}
}

// winogradOK reports whether the Winograd algorithms compute p: 3x3
// kernels, stride and dilation 1, at least two input channels per group.
func winogradOK(p Conv2DParams) bool {
	return p.KH == 3 && p.KW == 3 && p.StrideH == 1 && p.StrideW == 1 && p.DilH == 1 && p.DilW == 1 && p.C/p.Group >= 2 &&
		p.H*p.W < 1<<31 && p.OutH()*p.OutW() < 1<<31 // offsets in a plane are int32
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
	// the filter of output channel g*mg+om and input channel c of group g;
	// when ut is set, u is transposed: u[((g*a*a + xi)*cg + c)*mg + om].
	u  []float32
	ut bool
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
	scratchAdd(int64(len(f.u)) * 4) // the transformed filter stays for the measurement
	// With fewer tiles than the micro-kernel has columns, the GEMMs take
	// the output channels as columns instead, reading U transposed.
	tiles := ((p.OutH() + k.m - 1) / k.m) * ((p.OutW() + k.m - 1) / k.m)
	f.ut = tiles < active.nr && mg > tiles
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
					if f.ut {
						f.u[((g*aa+xi)*cg+c)*mg+om] = u[xi]
					} else {
						f.u[((g*aa+xi)*mg+om)*cg+c] = u[xi]
					}
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
	winoDPool floatPool
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
	if nr := active.nr; tb > nr {
		// Whole column panels of the micro-kernel.
		tb = (tb + nr - 1) / nr * nr
	}
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

	// Per tile of the block: the offset of its input window in a plane,
	// or -1 when the window crosses the border (those are gathered one
	// element at a time).
	run := func(item int, vbuf, mbuf, dbuf, tbuf, sbuf []float32, base, obase []int32) {
		blk := item % blocks
		g := item / blocks % p.Group
		n := item / blocks / p.Group
		t0 := blk * tb
		t1 := min(t0+tb, tiles)
		nb := t1 - t0
		vbuf, mbuf = vbuf[:aa*cg*nb], mbuf[:aa*mg*nb]
		dbuf, tbuf, sbuf, base, obase = dbuf[:aa*nb], tbuf[:aa*nb], sbuf[:a*nb], base[:nb], obase[:nb]
		row := func(buf []float32, r int) []float32 { return buf[r*nb : r*nb+nb] }
		var src, dst rows
		for t := t0; t < t1; t++ {
			y0 := (t/tw)*m - p.PadTop
			x0 := (t%tw)*m - p.PadLeft
			base[t-t0] = -1
			if y0 >= 0 && x0 >= 0 && y0+a <= p.H && x0+a <= p.W {
				base[t-t0] = int32(y0*p.W + x0)
			}
			// Whole output tiles are written by winoScatter, the others
			// one element at a time.
			oy0, ox0 := (t/tw)*m, (t%tw)*m
			obase[t-t0] = -1
			if oy0+m <= oh && ox0+m <= ow {
				obase[t-t0] = int32(oy0*ow + ox0)
			}
		}
		xg := x[(n*p.C+g*cg)*hw:]
		for c := 0; c < cg; c++ {
			xc := xg[c*hw : c*hw+hw]
			// Gather: dbuf row i*a+j holds element (i, j) of every tile.
			for i := 0; i < a; i++ {
				for j := 0; j < a; j++ {
					winoGather(row(dbuf, i*a+j), xc, base, i*p.W+j)
				}
			}
			for tt, b := range base {
				if b >= 0 {
					continue
				}
				t := t0 + tt
				y0 := (t/tw)*m - p.PadTop
				x0 := (t%tw)*m - p.PadLeft
				for i := 0; i < a; i++ {
					iy := y0 + i
					for j := 0; j < a; j++ {
						v := float32(0)
						if ix := x0 + j; iy >= 0 && iy < p.H && ix >= 0 && ix < p.W {
							v = xc[iy*p.W+ix]
						}
						dbuf[(i*a+j)*nb+tt] = v
					}
				}
			}
			// Columns: tbuf = Bt d.
			for j := 0; j < a; j++ {
				for r := 0; r < a; r++ {
					src[r], dst[r] = row(dbuf, r*a+j), row(tbuf, r*a+j)
				}
				k.applyInput(&src, &dst)
			}
			// Rows: v = tbuf B, straight into the GEMM operands.
			for i := 0; i < a; i++ {
				for r := 0; r < a; r++ {
					src[r] = row(tbuf, i*a+r)
					xi := i*a + r
					dst[r] = vbuf[(xi*cg+c)*nb : (xi*cg+c)*nb+nb]
				}
				k.applyInput(&src, &dst)
			}
		}
		// M[xi] (mg x nb) = U[xi] V[xi]; with a transposed filter, the
		// output channels make the columns instead: M[xi]^T (nb x mg) =
		// V[xi]^T U[xi]^T.
		transposed := f.ut
		ug := f.u[g*aa*mg*cg:]
		for xi := 0; xi < aa; xi++ {
			if transposed {
				sgemm(true, false, nb, mg, cg, 1, vbuf[xi*cg*nb:], nb, ug[xi*mg*cg:], mg, 0, mbuf[xi*mg*nb:], mg, gemmThreads)
			} else {
				sgemm(false, false, mg, nb, cg, 1, ug[xi*mg*cg:], cg, vbuf[xi*cg*nb:], nb, 0, mbuf[xi*mg*nb:], nb, gemmThreads)
			}
		}
		for om := 0; om < mg; om++ {
			oc := g*mg + om
			var b float32
			if bias != nil {
				b = bias[oc]
			}
			yo := y[(n*p.M+oc)*oh*ow : (n*p.M+oc+1)*oh*ow]
			// Columns: dbuf (m x a rows) = At s.
			for j := 0; j < a; j++ {
				for r := 0; r < a; r++ {
					xi := r*a + j
					if transposed {
						sr := row(sbuf, r)
						mt := mbuf[xi*nb*mg+om:]
						for tt := range sr {
							sr[tt] = mt[tt*mg]
						}
						src[r] = sr
						continue
					}
					src[r] = mbuf[(xi*mg+om)*nb : (xi*mg+om)*nb+nb]
				}
				for r := 0; r < m; r++ {
					dst[r] = row(dbuf, r*a+j)
				}
				k.applyOutput(&src, &dst)
			}
			// Rows: tbuf (m x m rows) = dbuf A.
			for i := 0; i < m; i++ {
				for r := 0; r < a; r++ {
					src[r] = row(dbuf, i*a+r)
				}
				for r := 0; r < m; r++ {
					dst[r] = row(tbuf, i*m+r)
				}
				k.applyOutput(&src, &dst)
			}
			for i := 0; i < m; i++ {
				for j := 0; j < m; j++ {
					winoScatter(yo, row(tbuf, i*m+j), obase, i*ow+j, b, lo, hi)
				}
			}
			for tt, o := range obase {
				if o >= 0 {
					continue
				}
				t := t0 + tt
				oy0, ox0 := (t/tw)*m, (t%tw)*m
				nr, nc := min(m, oh-oy0), min(m, ow-ox0)
				for i := 0; i < nr; i++ {
					out := yo[(oy0+i)*ow+ox0 : (oy0+i)*ow+ox0+nc]
					for j := range out {
						out[j] = min(max(tbuf[(i*m+j)*nb+tt]+b, lo), hi)
					}
				}
			}
		}
	}
	work := func(i0, i1 int) {
		vp := winoVPool.get(aa * cg * tb)
		mp := winoMPool.get(aa * mg * tb)
		dp := winoDPool.get((2*aa + a) * tb)
		base := make([]int32, 2*tb)
		for it := i0; it < i1; it++ {
			run(it, *vp, *mp, (*dp)[:aa*tb], (*dp)[aa*tb:2*aa*tb], (*dp)[2*aa*tb:], base[:tb], base[tb:])
		}
		winoVPool.put(vp)
		winoMPool.put(mp)
		winoDPool.put(dp)
	}
	if parallelItems {
		ParallelFor(items, (items+nt-1)/nt, work)
	} else {
		work(0, items)
	}
}
