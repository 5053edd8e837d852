//go:build amd64 && !purego

package cpu

//go:generate go run gen_dwdirect_amd64.go

// dwDirectAsm reports whether dwDirect's AVX-512 kernels run: the active
// kernel is the AVX-512 one (tests switch it to exercise the others).
func dwDirectAsm() bool { return active == avx512Kernel }

// dwFlatS1 runs dwFlatS1AVX512 on one plane after checking the slices: in
// is the H x W input plane, dst the output plane of the same size, off the
// float offset of tap (0, 0) from an output's own index.
func dwFlatS1(in []float32, w, off int, wt, dst []float32, g *dwGeom, b, lo, hi float32) {
	if len(wt) < 9 || len(dst) < len(in) || len(in) == 0 || len(g.tab) < 16*g.nvec || 16*g.nvec < len(in) || 16*(g.nvec-1) >= len(in) {
		panic("cpu: depthwise kernel called with short buffers")
	}
	dwFlatS1AVX512(&in[0], w, 4*off, &wt[0], &dst[0], &g.tab[0], g.nvec, b, lo, hi)
}

// dwFlatS1x2 is dwFlatS1 on two planes of the same size at once.
func dwFlatS1x2(in0, in1 []float32, w, off int, wt0, wt1, dst0, dst1 []float32, g *dwGeom, b0, b1, lo, hi float32) {
	n := len(in0)
	if len(in1) != n || len(wt0) < 9 || len(wt1) < 9 || len(dst0) < n || len(dst1) < n || n == 0 ||
		len(g.tab) < 16*g.nvec || 16*g.nvec < n || 16*(g.nvec-1) >= n {
		panic("cpu: depthwise kernel called with short buffers")
	}
	dwFlatS1x2AVX512(&in0[0], &in1[0], w, 4*off, &wt0[0], &wt1[0], &dst0[0], &dst1[0], &g.tab[0], g.nvec, b0, b1, lo, hi)
}

// dwFlatS1Run runs dwFlatS1RunAVX512 on npairs pairs of consecutive
// planes of one image: in holds the 2*npairs input planes of hw floats,
// dst their outputs, wt their channels' weights (9 each) and bias their
// biases (nil: none). It checks the slices first.
func dwFlatS1Run(in []float32, hw, w, off int, wt, bias, dst []float32, g *dwGeom, npairs int, lo, hi float32) {
	n := 2 * npairs
	if npairs <= 0 || hw <= 0 || len(in) < n*hw || len(dst) < n*hw || len(wt) < 9*n || (bias != nil && len(bias) < n) ||
		len(g.tab) < 16*g.nvec || 16*g.nvec < hw || 16*(g.nvec-1) >= hw {
		panic("cpu: depthwise kernel called with short buffers")
	}
	b, bstride := &dwNoBias, 0
	if bias != nil {
		b, bstride = &bias[0], 4
	}
	dwFlatS1RunAVX512(&in[0], 4*hw, w, 4*off, &wt[0], b, bstride, &dst[0], &g.tab[0], g.nvec, npairs, lo, hi)
}

// dwNoBias is the bias dwFlatS1Run reads for every plane of a convolution
// without one.
var dwNoBias float32

// dwRowsS2 runs dwRowsS2AVX512 on one plane after checking the slices.
// Its masks keep every load inside in's rows, or inside the zero row.
func dwRowsS2(in []float32, padLeft int, wt, dst []float32, oh, ow int, g *dwGeom, b, lo, hi float32) {
	if len(wt) < 9 || len(dst) < oh*ow || oh <= 0 || len(g.rows) < 3*oh || len(g.tab) < 16*g.nvec || 16*g.nvec < ow || len(g.zero) <= padLeft {
		panic("cpu: depthwise kernel called with short buffers")
	}
	for _, r := range g.rows[:3*oh] {
		if r >= int64(4*len(in)) {
			panic("cpu: depthwise kernel rows outside the plane")
		}
	}
	// Column c of a row is c + padLeft floats from the row's pointer: the
	// kernel moves in back by padLeft floats, and zero has padLeft floats
	// before its row. It masks every lane outside the row, so nothing
	// before in[0] is read.
	dwRowsS2AVX512(&in[0], &g.zero[0], &g.rows[0], oh, &wt[0], &dst[0], ow, &g.tab[0], g.nvec, padLeft, b, lo, hi)
}

// dwRowsS2Run runs dwRowsS2RunAVX512 on nplanes consecutive planes of one
// image: in holds their input planes of hw floats, dst their outputs of
// oh x ow, wt their channels' weights (9 each) and bias their biases (nil:
// none). It checks the slices, and the row table once, first.
func dwRowsS2Run(in []float32, hw, padLeft int, wt, bias, dst []float32, oh, ow int, g *dwGeom, nplanes int, lo, hi float32) {
	if nplanes <= 0 || hw <= 0 || len(in) < nplanes*hw || len(wt) < 9*nplanes || (bias != nil && len(bias) < nplanes) ||
		len(dst) < nplanes*oh*ow || oh <= 0 || len(g.rows) < 3*oh || len(g.tab) < 16*g.nvec || 16*g.nvec < ow || len(g.zero) <= padLeft {
		panic("cpu: depthwise kernel called with short buffers")
	}
	for _, r := range g.rows[:3*oh] {
		if r >= int64(4*hw) {
			panic("cpu: depthwise kernel rows outside the plane")
		}
	}
	b, bstride := &dwNoBias, 0
	if bias != nil {
		b, bstride = &bias[0], 4
	}
	if padLeft == 1 && dwS2P1 {
		// The kernel reads the zero row from its float padLeft on, masked
		// to the W floats after it: inside g.zero's padLeft + W.
		dwRowsS2P1RunAVX512(&in[0], &g.zero[0], &g.rows[0], oh, &wt[0], b, bstride, &dst[0], ow, &g.tab[0], g.nvec, padLeft, 4*hw, nplanes, lo, hi)
		return
	}
	dwRowsS2RunAVX512(&in[0], &g.zero[0], &g.rows[0], oh, &wt[0], b, bstride, &dst[0], ow, &g.tab[0], g.nvec, padLeft, 4*hw, nplanes, lo, hi)
}

//go:noescape
func dwFlatS1AVX512(in *float32, w, off int, wt *float32, out *float32, tab *uint16, nvec int, b, lo, hi float32)

//go:noescape
func dwFlatS1x2AVX512(in0, in1 *float32, w, off int, wt0, wt1 *float32, out0, out1 *float32, tab *uint16, nvec int, b0, b1, lo, hi float32)

//go:noescape
func dwFlatS1RunAVX512(in *float32, hw4, w, off int, wt, bias *float32, bstride int, out *float32, tab *uint16, nvec, npairs int, lo, hi float32)

//go:noescape
func dwRowsS2RunAVX512(in, zero *float32, rows *int64, oh int, wt, bias *float32, bstride int, out *float32, ow int, tab *uint16, nvec, padl, hw4, nplanes int, lo, hi float32)

//go:noescape
func dwRowsS2P1RunAVX512(in, zero *float32, rows *int64, oh int, wt, bias *float32, bstride int, out *float32, ow int, tab *uint16, nvec, padl, hw4, nplanes int, lo, hi float32)

//go:noescape
func dwRowsS2AVX512(in, zero *float32, rows *int64, oh int, wt *float32, out *float32, ow int, tab *uint16, nvec, padl int, b, lo, hi float32)

// biasClampRow sets row[i] = clamp(row[i] + b, lo, hi) with
// biasClampAVX512; it reports false, doing nothing, where the active
// kernel is not the AVX-512 one.
func biasClampRow(row []float32, b, lo, hi float32) bool {
	if active != avx512Kernel {
		return false
	}
	if len(row) > 0 {
		biasClampAVX512(&row[0], len(row), b, lo, hi)
	}
	return true
}

//go:noescape
func biasClampAVX512(y *float32, n int, b, lo, hi float32)
