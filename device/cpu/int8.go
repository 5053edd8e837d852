package cpu

import (
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// This file holds the INT8 GEMM: signed 8-bit weights times signed 8-bit
// activations, accumulated exactly in int32 and turned into float32 by a
// per-row scale, bias, residual and clamp (the epilogue of a quantized
// convolution or matrix product).
//
// Operands. The weights W (m x k) are constant: PackInt8Weights packs them
// once for the int8 kernel in use. The activations X (k x n) change with
// every call and are passed in "quad" layout: k is split into quads of four
// consecutive k, and quad q holds, for each column j, the four bytes
// X[4q..4q+3][j] next to each other (at x[q*ps+4*j : q*ps+4*j+4], ps being
// the quad stride in bytes). A channel-quad-interleaved image (NCHWc4) is
// such a matrix of its pixels, and im2col over it (four bytes at a time)
// writes one, so a convolution never repacks its input.

// int8Kernel is one implementation of the int8 micro-kernel.
type int8Kernel struct {
	name string
	// mr x nr is the tile a call of tile computes.
	mr, nr int
	// wide: the weights are packed as int16 (the AVX2 kernel), not int8.
	wide bool
	// tile sets c[i*ldc+j] = sum over q < nq, t < 4 of
	// w[(q*mr+i)*4+t] * x[q*ps+4*j+t] for i < rows <= mr and j < cols <= nr,
	// exactly (int32 arithmetic, wrapping). w is the packed row panel (int16
	// elements when wide), corr its rows' VNNI correction (-128 times the
	// row sums). x is read only within the columns asked for.
	tile func(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, rows, cols int)
	// row, when not nil, is a vectorized int8RowGo.
	row func(c []int32, scale, bias float32, z, dst []float32, lo, hi float32)
	// tileEp, when not nil, is tile with the epilogue of Int8Gemm fused
	// in: rows of dst (stride ldo) get clamp(float32(acc)*scale[i] +
	// bias[i] (+ z[i*ldz+j] when z is not nil), lo, hi) for j < cols.
	tileEp func(rows, nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, cols int)
	// mm, when not nil, is a tile of Int8MatMul with its epilogue: rows
	// <= 6 rows of A (row-major, stride lda) by the 64 columns of a packed
	// panel of B ([q][64][4]), stored for the columns set in mask (z nil:
	// no residual). corr, scale and bias hold 64 entries.
	mm func(rows, nq int, a *int8, lda int, w *int8, corr *int32, scale, bias, z *float32, ldz int, dst *float32, ldo int, lo, hi float32, mask uint64)
}

// int8Active is the int8 kernel PackInt8Weights packs for. Tests set it to
// each entry of int8Kernels() in turn.
var int8Active = int8Kernels()[0]

// Int8ISA names the int8 kernel in use: "avx512vnni", "avx2" or "generic".
// It belongs in a plan's device fingerprint (key "int8").
func Int8ISA() string { return int8Active.name }

// ErrUnknownInt8Kernel is returned by SetInt8Kernel for a kernel this CPU
// does not have.
var ErrUnknownInt8Kernel = errors.New("cpu: unknown int8 kernel")

// Int8KernelNames returns the names of the int8 kernels this CPU can run,
// the preferred one (the default) first and "generic" (pure Go) last.
func Int8KernelNames() []string {
	var names []string
	for _, k := range int8Kernels() {
		names = append(names, k.name)
	}
	return names
}

// SetInt8Kernel selects the int8 kernel that PackInt8Weights packs for
// (weights already packed keep theirs), for tests and benchmarks that
// compare the implementations. It must not be called while weights are
// being packed.
func SetInt8Kernel(name string) error {
	for _, k := range int8Kernels() {
		if k.name == name {
			int8Active = k
			return nil
		}
	}
	return fmt.Errorf("%w: %q (this CPU has %v)", ErrUnknownInt8Kernel, name, Int8KernelNames())
}

func init() {
	extraFeatureFuncs = append(extraFeatureFuncs, func() (string, string) { return "int8", Int8ISA() })
}

// Int8Weights is a constant int8 matrix W (m x k) packed for the int8
// GEMM. It is immutable and safe for concurrent use.
type Int8Weights struct {
	m, k, nq int
	kern     *int8Kernel
	// data holds ceil(m/mr) row panels, each nq quads of mr rows of four
	// k (int8, or int16 when kern.wide), zero-padded.
	data8  []int8
	data16 []int16
	// corr holds -128 times each row's sum (padded to the panels).
	corr []int32
}

// Rows returns m, the number of rows of W.
func (w *Int8Weights) Rows() int { return w.m }

// Depth returns k, the number of columns of W (rows of X).
func (w *Int8Weights) Depth() int { return w.k }

// PackInt8Weights packs the m x k int8 matrix w (row stride ldw) for the
// int8 kernel in use. It panics if a size is negative or w is too short.
func PackInt8Weights(w []int8, m, k, ldw int) *Int8Weights {
	if m < 0 || k < 0 || ldw < k || (m > 0 && k > 0 && len(w) < (m-1)*ldw+k) {
		panic(fmt.Sprintf("cpu: PackInt8Weights: bad sizes m=%d k=%d ldw=%d len=%d", m, k, ldw, len(w)))
	}
	kern := int8Active
	mr := kern.mr
	nq := (k + 3) / 4
	panels := (m + mr - 1) / mr
	p := &Int8Weights{m: m, k: k, nq: nq, kern: kern, corr: make([]int32, panels*mr)}
	size := panels * nq * mr * 4
	if kern.wide {
		p.data16 = make([]int16, size)
	} else {
		p.data8 = make([]int8, size)
	}
	for i := 0; i < m; i++ {
		panel, r := i/mr, i%mr
		var sum int32
		for kk := 0; kk < k; kk++ {
			v := w[i*ldw+kk]
			sum += int32(v)
			at := ((panel*nq+kk/4)*mr+r)*4 + kk%4
			if kern.wide {
				p.data16[at] = int16(v)
			} else {
				p.data8[at] = v
			}
		}
		p.corr[i] = -128 * sum
	}
	return p
}

// panel returns the packed row panel starting at row i (a multiple of mr).
func (w *Int8Weights) panel(i int) unsafe.Pointer {
	off := i * w.nq * 4
	if w.kern.wide {
		return unsafe.Pointer(&w.data16[off])
	}
	return unsafe.Pointer(&w.data8[off])
}

// Int8Output says what Int8Gemm does with the int32 products
// acc[i][j] = sum over p of W[i][p]*X[p][j]: it stores
//
//	clamp(float32(acc[i][j])*Scale[i] + Bias[i] + Z[at], Lo, Hi)
//
// to Dst[at], where at = i*Ld+j, or j*Ld+i when Trans is set. Bias and Z
// may be nil (nothing added). Each float operation rounds to float32.
type Int8Output struct {
	Scale []float32
	Bias  []float32
	Z     []float32
	Dst   []float32
	Ld    int
	Trans bool
	// Lo and Hi clamp the result; use -Inf and +Inf for no clamp.
	Lo, Hi float32
}

// NoClamp returns the bounds of an Int8Output that clamps nothing.
func NoClamp() (lo, hi float32) { return float32(math.Inf(-1)), float32(math.Inf(1)) }

// Int8Gemm computes W (packed, m x k) times X (k x n, int8, in quad layout
// with quad stride ps bytes: X[4q+t][j] at x[q*ps+4*j+t]) and stores the
// result through out, on up to nt goroutines. Bytes of the quads past row
// k are ignored (multiplied by zero weights). It runs the kernel w was
// packed for. It panics if a slice is too short or out.Ld makes rows
// overlap.
func Int8Gemm(w *Int8Weights, x []int8, n, ps int, out *Int8Output, nt int) {
	m, nq := w.m, w.nq
	if n < 0 {
		panic(fmt.Sprintf("cpu: Int8Gemm: negative n=%d", n))
	}
	if m == 0 || n == 0 {
		return
	}
	if nq > 0 && (ps < 4*n || len(x) < (nq-1)*ps+4*n) {
		panic(fmt.Sprintf("cpu: Int8Gemm: x of %d bytes too short for %d quads of %d columns (stride %d)", len(x), nq, n, ps))
	}
	if len(out.Scale) < m || (out.Bias != nil && len(out.Bias) < m) {
		panic(fmt.Sprintf("cpu: Int8Gemm: %d scales, %d biases for %d rows", len(out.Scale), len(out.Bias), m))
	}
	need := (m-1)*out.Ld + n
	if out.Trans {
		need = (n-1)*out.Ld + m
	}
	minLd := n
	if out.Trans {
		minLd = m
	}
	if out.Ld < minLd || len(out.Dst) < need || (out.Z != nil && len(out.Z) < need) {
		panic(fmt.Sprintf("cpu: Int8Gemm: output of %d (residual %d) too short for %dx%d with stride %d", len(out.Dst), len(out.Z), m, n, out.Ld))
	}
	kern := w.kern
	mr, nr := kern.mr, kern.nr
	mp, np := (m+mr-1)/mr, (n+nr-1)/nr
	tasks := mp * np
	grain := max(1, (1<<17)/max(1, mr*nr*4*max(nq, 1)))
	if nt <= 1 {
		grain = tasks
	}
	if nt > 1 && tasks < 2*nt {
		grain = 1
	}
	var zeros []float32
	if kern.tileEp != nil && out.Bias == nil {
		zeros = make([]float32, m)
	}
	run := func(lo, hi int) {
		var cbuf [int8MaxTile]int32
		c := cbuf[:mr*nr]
		for t := lo; t < hi; t++ {
			jb, ib := t/mp, t%mp
			i0, j0 := ib*mr, jb*nr
			rows, cols := min(mr, m-i0), min(nr, n-j0)
			if kern.tileEp != nil && nq > 0 && !out.Trans {
				bias := zeros
				if out.Bias != nil {
					bias = out.Bias
				}
				var z *float32
				if out.Z != nil {
					z = &out.Z[i0*out.Ld+j0]
				}
				kern.tileEp(rows, nq, w.panel(i0), &w.corr[i0], &x[4*j0], ps, &out.Scale[i0], &bias[i0], z, out.Ld,
					&out.Dst[i0*out.Ld+j0], out.Ld, out.Lo, out.Hi, cols)
				continue
			}
			if nq == 0 {
				clear(c)
			} else {
				kern.tile(nq, w.panel(i0), &w.corr[i0], &x[4*j0], ps, &c[0], nr, rows, cols)
			}
			storeInt8Tile(kern, c, nr, i0, j0, rows, cols, out)
		}
	}
	if grain >= tasks {
		run(0, tasks)
		return
	}
	ParallelFor(tasks, grain, run)
}

// Int8MatWeights is a constant int8 matrix B (k x n), the right operand of
// Int8MatMul, packed for the int8 kernel in use. It is immutable and safe
// for concurrent use.
type Int8MatWeights struct {
	k, n, nq int
	kern     *int8Kernel
	// With kern.mm: panels of 64 columns, [panel][q][64][4], zero-padded,
	// and -128 times each column's sum (padded).
	data []int8
	corr []int32
	// Otherwise B's transpose, for Int8Gemm.
	t *Int8Weights
}

// int8MMCols is the column panel of the mm kernels.
const int8MMCols = 64

// PackInt8MatMul packs the k x n int8 matrix b (row stride ldb) for
// Int8MatMul. It panics if a size is negative or b is too short.
func PackInt8MatMul(b []int8, k, n, ldb int) *Int8MatWeights {
	if k < 0 || n < 0 || ldb < n || (k > 0 && n > 0 && len(b) < (k-1)*ldb+n) {
		panic(fmt.Sprintf("cpu: PackInt8MatMul: bad sizes k=%d n=%d ldb=%d len=%d", k, n, ldb, len(b)))
	}
	w := &Int8MatWeights{k: k, n: n, nq: (k + 3) / 4, kern: int8Active}
	if w.kern.mm == nil {
		bt := make([]int8, n*k)
		for p := 0; p < k; p++ {
			for j := 0; j < n; j++ {
				bt[j*k+p] = b[p*ldb+j]
			}
		}
		w.t = PackInt8Weights(bt, n, k, max(k, 1))
		return w
	}
	const nr = int8MMCols
	np := (n + nr - 1) / nr
	w.data = make([]int8, np*w.nq*nr*4)
	w.corr = make([]int32, np*nr)
	for p := 0; p < k; p++ {
		for j := 0; j < n; j++ {
			v := b[p*ldb+j]
			w.data[((j/nr*w.nq+p/4)*nr+j%nr)*4+p%4] = v
			w.corr[j] -= 128 * int32(v)
		}
	}
	return w
}

// Int8MatMul computes A (rows x k, int8, row-major with row stride lda;
// the bytes of A's rows past k up to a multiple of 4 are read and
// ignored, so lda must be at least k rounded up to 4) times B (packed)
// and stores the result through out, whose Scale and Bias are indexed by
// B's column and whose Dst and Z hold rows x n (out.Trans must be
// false): Dst[i*Ld+j] = clamp(float32(acc)*Scale[j] + Bias[j] + Z[i*Ld+j],
// Lo, Hi). It runs on up to nt goroutines and panics if a slice is too
// short.
func Int8MatMul(w *Int8MatWeights, a []int8, rows, lda int, out *Int8Output, nt int) {
	k, n, nq := w.k, w.n, w.nq
	if rows < 0 || out.Trans {
		panic(fmt.Sprintf("cpu: Int8MatMul: rows=%d trans=%v", rows, out.Trans))
	}
	if rows == 0 || n == 0 {
		return
	}
	if nq > 0 && (lda < 4*nq || len(a) < (rows-1)*lda+4*nq) {
		panic(fmt.Sprintf("cpu: Int8MatMul: A of %d bytes too short for %d rows of %d (stride %d)", len(a), rows, k, lda))
	}
	if len(out.Scale) < n || (out.Bias != nil && len(out.Bias) < n) {
		panic(fmt.Sprintf("cpu: Int8MatMul: %d scales, %d biases for %d columns", len(out.Scale), len(out.Bias), n))
	}
	need := (rows-1)*out.Ld + n
	if out.Ld < n || len(out.Dst) < need || (out.Z != nil && len(out.Z) < need) {
		panic(fmt.Sprintf("cpu: Int8MatMul: output of %d (residual %d) too short for %dx%d with stride %d", len(out.Dst), len(out.Z), rows, n, out.Ld))
	}
	if w.t != nil || nq == 0 {
		int8MatMulGemm(w, a, rows, lda, out, nt)
		return
	}
	const nr = int8MMCols
	np := (n + nr - 1) / nr
	sc := make([]float32, 2*np*nr)
	copy(sc, out.Scale[:n])
	bias := sc[np*nr:]
	if out.Bias != nil {
		copy(bias, out.Bias[:n])
	}
	const mr = 6
	mp := (rows + mr - 1) / mr
	tasks := mp * np
	grain := max(1, (1<<17)/(mr*nr*4*nq))
	if nt <= 1 {
		grain = tasks
	} else if tasks < 2*nt {
		grain = 1
	}
	run := func(lo, hi int) {
		for t := lo; t < hi; t++ {
			jb, ib := t/mp, t%mp
			i0, j0 := ib*mr, jb*nr
			r, cols := min(mr, rows-i0), min(nr, n-j0)
			mask := ^uint64(0)
			if cols < 64 {
				mask = 1<<cols - 1
			}
			var z *float32
			if out.Z != nil {
				z = &out.Z[i0*out.Ld+j0]
			}
			w.kern.mm(r, nq, &a[i0*lda], lda, &w.data[jb*nq*nr*4], &w.corr[j0], &sc[j0], &bias[j0], z, out.Ld,
				&out.Dst[i0*out.Ld+j0], out.Ld, out.Lo, out.Hi, mask)
		}
	}
	if grain >= tasks {
		run(0, tasks)
		return
	}
	ParallelFor(tasks, grain, run)
}

// int8MatMulGemm is Int8MatMul through Int8Gemm on B's transpose: A's
// rows become the quad layout of A's transpose.
func int8MatMulGemm(w *Int8MatWeights, a []int8, rows, lda int, out *Int8Output, nt int) {
	nq := w.nq
	ps := 4 * rows
	x := make([]int8, max(nq, 1)*ps)
	for j := 0; j < rows; j++ {
		for q := 0; q < nq; q++ {
			copy(x[q*ps+4*j:q*ps+4*j+4], a[j*lda+4*q:j*lda+4*q+4])
		}
	}
	o := *out
	o.Trans = true
	t := w.t
	if t == nil { // k == 0
		t = PackInt8Weights(nil, w.n, 0, 0)
	}
	Int8Gemm(t, x, rows, ps, &o, nt)
}

// int8MaxTile bounds mr*nr of every int8 kernel.
const int8MaxTile = 8 * 64

// storeInt8Tile applies the epilogue of out to the rows x cols tile c (row
// stride ldc) of output rows i0... and columns j0....
func storeInt8Tile(kern *int8Kernel, c []int32, ldc, i0, j0, rows, cols int, out *Int8Output) {
	for i := 0; i < rows; i++ {
		r := i0 + i
		var bias float32
		if out.Bias != nil {
			bias = out.Bias[r]
		}
		ci := c[i*ldc : i*ldc+cols]
		if out.Trans {
			ld := out.Ld
			sc := out.Scale[r]
			for j, v := range ci {
				at := (j0+j)*ld + r
				y := float32(float32(v)*sc) + bias
				if out.Z != nil {
					y += out.Z[at]
				}
				out.Dst[at] = min(max(y, out.Lo), out.Hi)
			}
			continue
		}
		at := r*out.Ld + j0
		var z []float32
		if out.Z != nil {
			z = out.Z[at : at+cols]
		}
		dst := out.Dst[at : at+cols]
		if kern.row != nil {
			kern.row(ci, out.Scale[r], bias, z, dst, out.Lo, out.Hi)
		} else {
			quantActive.row(ci, out.Scale[r], bias, z, dst, out.Lo, out.Hi)
		}
	}
}

// int8RowGo sets dst[j] = clamp(float32(c[j])*scale + bias + z[j], lo, hi)
// (z nil: nothing added), rounding each operation to float32.
func int8RowGo(c []int32, scale, bias float32, z, dst []float32, lo, hi float32) {
	dst = dst[:len(c)]
	if z != nil {
		z = z[:len(c)]
		for j, v := range c {
			y := float32(float32(float32(v)*scale)+bias) + z[j]
			dst[j] = min(max(y, lo), hi)
		}
		return
	}
	for j, v := range c {
		y := float32(float32(v)*scale) + bias
		dst[j] = min(max(y, lo), hi)
	}
}

// int8TileGo is the pure-Go tile of the generic kernel: int8 weights in
// panels of 4 rows, at most 16 columns.
func int8TileGo(nq int, w unsafe.Pointer, corr *int32, x *int8, ps int, c *int32, ldc, rows, cols int) {
	ws := unsafe.Slice((*int8)(w), nq*16)
	xs := unsafe.Slice(x, (nq-1)*ps+4*cols)
	var acc [4][16]int32
	a0, a1, a2, a3 := acc[0][:cols], acc[1][:cols], acc[2][:cols], acc[3][:cols]
	for q := 0; q < nq; q++ {
		wq := ws[q*16 : q*16+16 : q*16+16]
		w00, w01, w02, w03 := int32(wq[0]), int32(wq[1]), int32(wq[2]), int32(wq[3])
		w10, w11, w12, w13 := int32(wq[4]), int32(wq[5]), int32(wq[6]), int32(wq[7])
		w20, w21, w22, w23 := int32(wq[8]), int32(wq[9]), int32(wq[10]), int32(wq[11])
		w30, w31, w32, w33 := int32(wq[12]), int32(wq[13]), int32(wq[14]), int32(wq[15])
		xq := xs[q*ps : q*ps+4*cols]
		for j := range a0 {
			xj := xq[4*j : 4*j+4 : 4*j+4]
			x0, x1, x2, x3 := int32(xj[0]), int32(xj[1]), int32(xj[2]), int32(xj[3])
			a0[j] += w00*x0 + w01*x1 + w02*x2 + w03*x3
			a1[j] += w10*x0 + w11*x1 + w12*x2 + w13*x3
			a2[j] += w20*x0 + w21*x1 + w22*x2 + w23*x3
			a3[j] += w30*x0 + w31*x1 + w32*x2 + w33*x3
		}
	}
	cs := unsafe.Slice(c, (rows-1)*ldc+cols)
	for i := 0; i < rows; i++ {
		copy(cs[i*ldc:i*ldc+cols], acc[i][:cols])
	}
}

// int8TileRef is the tile of a kernel whose weight panels have mr rows of
// elements of type W, in plain Go.
func int8TileRef[W int8 | int16](mr, nq int, w unsafe.Pointer, x *int8, ps int, c *int32, ldc, rows, cols int) {
	ws := unsafe.Slice((*W)(w), nq*mr*4)
	xs := unsafe.Slice(x, (nq-1)*ps+4*cols)
	cs := unsafe.Slice(c, (rows-1)*ldc+cols)
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			var s int32
			for q := 0; q < nq; q++ {
				wq := ws[(q*mr+i)*4 : (q*mr+i)*4+4 : (q*mr+i)*4+4]
				xq := xs[q*ps+4*j : q*ps+4*j+4 : q*ps+4*j+4]
				s += int32(wq[0])*int32(xq[0]) + int32(wq[1])*int32(xq[1]) +
					int32(wq[2])*int32(xq[2]) + int32(wq[3])*int32(xq[3])
			}
			cs[i*ldc+j] = s
		}
	}
}

// int8GenericKernel is the pure-Go int8 kernel: always available, always
// tested.
var int8GenericKernel = &int8Kernel{name: "generic", mr: 4, nr: 16, tile: int8TileGo}

// QuantizeInt8 sets dst[i] = clamp(RoundToEven(src[i]/scale), -127, 127)
// for every i of src (NaN becomes 0). It is the activation quantizer of the
// int8 operators.
func QuantizeInt8(dst []int8, src []float32, scale float32) {
	quantRows(dst[:len(src)], src, scale)
}

// QuantizeInt8Float is QuantizeInt8 storing the integers as float32:
// dst[i] = float32(clamp(RoundToEven(src[i]/scale), -127, 127)).
func QuantizeInt8Float(dst, src []float32, scale float32) {
	quantF32(dst[:len(src)], src, scale)
}

// ScaleBiasClamp sets dst[j] = clamp(src[j]*scale + bias + z[j], lo, hi)
// for j < len(src) (z nil: nothing added), each operation rounded to
// float32: the epilogue of Int8Gemm on sums already in float32 (exact
// integers). dst may be src.
func ScaleBiasClamp(dst, src []float32, scale, bias float32, z []float32, lo, hi float32) {
	scaleRow(dst[:len(src)], src, scale, bias, z, lo, hi)
}

func scaleRowGo(dst, src []float32, scale, bias float32, z []float32, lo, hi float32) {
	dst = dst[:len(src)]
	if z != nil {
		z = z[:len(src)]
		for j, v := range src {
			y := float32(float32(v*scale)+bias) + z[j]
			dst[j] = min(max(y, lo), hi)
		}
		return
	}
	for j, v := range src {
		y := float32(v*scale) + bias
		dst[j] = min(max(y, lo), hi)
	}
}

func quantF32Go(dst, src []float32, scale float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = float32(quantize1(v, scale))
	}
}

// quantImpl is one implementation of the loops that quantize activations
// and scale results; quantActive is the one in use (the fastest this CPU
// has), tests run each of quantImpls().
type quantImpl struct {
	name string
	// rows is QuantizeInt8 (len(dst) == len(src)).
	rows func(dst []int8, src []float32, scale float32)
	// quads4 quantizes four rows src[t*lds : t*lds+n] (t < 4) into
	// dst[4*j+t].
	quads4 func(dst []int8, src []float32, lds, n int, scale float32)
	// f32 is QuantizeInt8Float.
	f32 func(dst, src []float32, scale float32)
	// scale is ScaleBiasClamp.
	scale func(dst, src []float32, scale, bias float32, z []float32, lo, hi float32)
	// row is int8RowGo.
	row func(c []int32, scale, bias float32, z, dst []float32, lo, hi float32)
}

// quantGo is the pure-Go quantImpl.
var quantGo = &quantImpl{name: "generic", rows: quantRowsGo, quads4: quantQuads4Go, f32: quantF32Go, scale: scaleRowGo, row: int8RowGo}

var quantActive = quantImpls()[0]

// The loops in use, under short names.
func quantRows(dst []int8, src []float32, scale float32) { quantActive.rows(dst, src, scale) }
func quantQuads4(dst []int8, src []float32, lds, n int, scale float32) {
	quantActive.quads4(dst, src, lds, n, scale)
}
func quantF32(dst, src []float32, scale float32) { quantActive.f32(dst, src, scale) }
func scaleRow(dst, src []float32, scale, bias float32, z []float32, lo, hi float32) {
	quantActive.scale(dst, src, scale, bias, z, lo, hi)
}

func quantRowsGo(dst []int8, src []float32, scale float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = quantize1(v, scale)
	}
}

func quantQuads4Go(dst []int8, src []float32, lds, n int, scale float32) {
	dst = dst[:4*n]
	for t := 0; t < 4; t++ {
		s := src[t*lds : t*lds+n]
		for j, v := range s {
			dst[4*j+t] = quantize1(v, scale)
		}
	}
}

// quantize1 is QuantizeInt8 of one value.
func quantize1(v, scale float32) int8 {
	f := v / scale
	switch {
	case f >= 127:
		return 127
	case f <= -127:
		return -127
	case f != f:
		return 0
	}
	return int8(math.RoundToEven(float64(f)))
}

// QuantizeInt8Quads quantizes rows of float32 into the quad layout of
// Int8Gemm: for c < channels and j < n, the value src[c*lds+j] goes to
// dst[(c/4)*ps + 4*j + c%4]. The padding bytes of the last quad (channels
// up to a multiple of 4) are set to zero.
func QuantizeInt8Quads(dst []int8, ps int, src []float32, lds, channels, n int, scale float32) {
	nq := (channels + 3) / 4
	for q := 0; q < nq; q++ {
		d := dst[q*ps : q*ps+4*n]
		if 4*q+4 <= channels {
			quantQuads4(d, src[4*q*lds:], lds, n, scale)
			continue
		}
		for t := 0; t < 4; t++ {
			c := 4*q + t
			if c >= channels {
				for j := 0; j < n; j++ {
					d[4*j+t] = 0
				}
				continue
			}
			s := src[c*lds : c*lds+n]
			for j, v := range s {
				d[4*j+t] = quantize1(v, scale)
			}
		}
	}
}

// QuantizeInt8Rows quantizes the rows x k row-major matrix src (row stride
// lds) into the quad layout of its transpose, the k x rows matrix X of
// Int8Gemm: src[j*lds+p] goes to dst[(p/4)*ps + 4*j + p%4]. The padding
// bytes past k are set to zero.
func QuantizeInt8Rows(dst []int8, ps int, src []float32, lds, rows, k int, scale float32) {
	nq := (k + 3) / 4
	tmp := make([]int8, 4*nq)
	for j := 0; j < rows; j++ {
		quantRows(tmp[:k], src[j*lds:j*lds+k], scale)
		for q := 0; q < nq; q++ {
			copy(dst[q*ps+4*j:q*ps+4*j+4], tmp[4*q:4*q+4])
		}
	}
}
