package cpu

import (
	"fmt"
	"sync"
)

// SgemmSerial is Sgemm (op(A) = A, op(B) = B, alpha 1, beta 0: C = A*B) on
// the calling goroutine only: for kernels that already split their work
// over the cores (attention over heads and query blocks) and would
// otherwise start goroutines inside goroutines. bl is the cache blocking
// (the zero Blocking is the default one). It panics as Sgemm does.
func SgemmSerial(bl Blocking, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	sgemmBlocked(bl, false, false, m, n, k, 1, a, lda, b, ldb, 0, c, ldc, 1)
}

// SgemmEpilogue computes C = A*B (row-major, not transposed, beta 0) like
// Sgemm with the cache blocking bl (zero: the default), and calls epi on
// every block C[i0:i1, j0:j1] once it is final, on the goroutine that
// computed it, while the block is still in that core's caches: a bias, an
// activation or a residual applied there costs no second wake-up of the
// other cores and no pass over C from memory. The blocks cover C
// exactly once (C empty: epi is not called); epi may run on several
// goroutines at once (on disjoint blocks). It panics as Sgemm does, but
// takes any strides when m, n or k is 0.
func SgemmEpilogue(bl Blocking, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, epi func(i0, i1, j0, j1 int)) {
	sgemmEpilogue(bl, m, n, k, a, lda, b, ldb, c, ldc, nil, nil, epi)
}

// PackedB is a constant k x n matrix B packed once for the GEMM kernel in
// use: column panels of the kernel's nr columns, each k x nr row-major,
// the last one zero-padded. SgemmPacked reads it in place instead of
// packing B again on every call, as a layer's weights can be packed once
// when it first runs.
type PackedB struct {
	k, n int
	kern *kernel
	data []float32
	// b and ldb are the matrix as given, for the paths that read B
	// unpacked (GEMV, small products, another kernel in use).
	b   []float32
	ldb int
}

// PackB packs the k x n matrix b (row stride ldb) for the kernel in use;
// b must stay unchanged while the PackedB is used. It panics if b is too
// short.
func PackB(k, n int, b []float32, ldb int) *PackedB {
	if k < 0 || n < 0 {
		panic(fmt.Sprintf("cpu: PackB: negative size k=%d n=%d", k, n))
	}
	if k > 0 && n > 0 {
		checkMatrix("b", b, k, n, ldb)
	}
	kern := active
	nr := kern.nr
	np := (n + nr - 1) / nr
	data := alignedFloats(np * k * nr)
	for p := range np {
		w := min(nr, n-p*nr)
		for r := range k {
			d := data[(p*k+r)*nr:][:nr]
			copy(d, b[r*ldb+p*nr:][:w])
			clear(d[w:])
		}
	}
	return &PackedB{k: k, n: n, kern: kern, data: data, b: b, ldb: ldb}
}

// PackBOnly is PackB keeping no reference to b, which the caller may then
// drop (a transposed copy made only to be packed): the products that read B
// unpacked (too small for the packed kernel, or with another kernel than
// the one packed for) run the packed kernel, or read an unpacked copy made
// from the packed one.
func PackBOnly(k, n int, b []float32, ldb int) *PackedB {
	pb := PackB(k, n, b, ldb)
	pb.b, pb.ldb = nil, 0
	return pb
}

// unpacked returns the k x n matrix B (row stride n) from the packed panels.
func (p *PackedB) unpacked() []float32 {
	nr := p.kern.nr
	b := make([]float32, p.k*p.n)
	for j0 := 0; j0 < p.n; j0 += nr {
		w := min(nr, p.n-j0)
		panel := p.data[j0/nr*p.k*nr:]
		for r := range p.k {
			copy(b[r*p.n+j0:r*p.n+j0+w], panel[r*nr:r*nr+w])
		}
	}
	return b
}

// Bytes returns the memory the packed copy holds.
func (p *PackedB) Bytes() int64 { return int64(len(p.data)) * 4 }

// SgemmPacked is SgemmEpilogue with B packed by PackB (n and k are its
// sizes); epi may be nil.
func SgemmPacked(bl Blocking, m int, a []float32, lda int, pb *PackedB, c []float32, ldc int, epi func(i0, i1, j0, j1 int)) {
	SgemmPackedBias(bl, m, a, lda, pb, nil, c, ldc, epi)
}

// SgemmPackedBias is SgemmPacked computing C = A*B + bias (bias[j] added
// to column j of every row; nil: none) before epi sees a block: the AVX-512
// kernel adds it as it stores each tile's final values, so that no pass
// over C is left for it. Each element rounds as C + bias computed after the
// product does. bias must hold at least n elements.
func SgemmPackedBias(bl Blocking, m int, a []float32, lda int, pb *PackedB, bias []float32, c []float32, ldc int, epi func(i0, i1, j0, j1 int)) {
	if bias != nil && len(bias) < pb.n {
		panic(fmt.Sprintf("cpu: SgemmPackedBias: len(bias)=%d < n=%d", len(bias), pb.n))
	}
	if epi == nil {
		epi = func(i0, i1, j0, j1 int) {}
	}
	if pb.kern != active {
		// packed for another kernel: unpacked
		b, ldb := pb.b, pb.ldb
		if b == nil && pb.data != nil {
			b, ldb = pb.unpacked(), pb.n
		}
		pb = &PackedB{k: pb.k, n: pb.n, b: b, ldb: ldb}
	}
	sgemmEpilogue(bl, m, pb.n, pb.k, a, lda, pb.b, pb.ldb, c, ldc, pb, bias, epi)
}

// sgemmEpilogue is SgemmEpilogue, reading B from pb when it holds packed
// data and adding bias (when not nil) before the epilogue.
func sgemmEpilogue(bl Blocking, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, pb *PackedB, bias []float32, epi func(i0, i1, j0, j1 int)) {
	if bl != (Blocking{}) {
		if err := bl.Validate(); err != nil {
			panic(err)
		}
	}
	if m <= 0 || n <= 0 {
		return
	}
	if k == 0 {
		checkMatrix("c", c, m, n, ldc)
		scaleMatrix(c, m, n, ldc, 0)
		if bias != nil {
			addBias(c, ldc, bias, 0, m, 0, n)
		}
		epi(0, m, 0, n)
		return
	}
	nt := Threads()
	packedOnly := pb != nil && pb.data != nil && pb.b == nil // PackBOnly: no unpacked B to read
	if !packedOnly && (m <= 1 || n <= 1 || int64(m)*int64(n)*int64(k) < 1<<17) {
		// GEMV paths, empty products and small ones (single goroutine):
		// the whole product, then the epilogue.
		sgemmBlocked(bl, false, false, m, n, k, 1, a, lda, b, ldb, 0, c, ldc, nt)
		if bias != nil {
			addBias(c, ldc, bias, 0, m, 0, n)
		}
		epi(0, m, 0, n)
		return
	}
	checkMatrix("a", a, m, k, lda)
	if !packedOnly {
		checkMatrix("b", b, k, n, ldb)
	}
	checkMatrix("c", c, m, n, ldc)
	e := epiJobs.Get().(*epiJob)
	defer epiJobs.Put(e)
	e.g = gemmJob{
		kern: active, m: m, n: n, k: k, alpha: 1,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, blk: bl, bias: bias,
	}
	g := &e.g
	if pb != nil && pb.data != nil {
		g.pb = pb
	}
	e.epi = epi
	defer func() { e.g, e.epi = gemmJob{}, nil }() // drop the caller's memory
	nt = int(min(int64(nt), int64(m)*int64(n)*int64(k)>>16))
	// Each goroutine computes its block as Sgemm would (B packed where
	// Sgemm packs it: computing fewer rows at a time to keep them in L1
	// made the GEMM read B in place, slower on deep products) and then
	// runs the epilogue over it from its L2.
	e.split(nt)
}

// split computes e's product (and epilogue) on at most nt goroutines, each
// taking a range of rows or of columns of C: the dimension that divides
// more evenly over the goroutines; on a tie, the longer one (which also
// duplicates the smaller operand's packing).
func (e *epiJob) split(nt int) {
	g := &e.g
	m, n := g.m, g.n
	if nt <= 1 {
		e.block(0, m, 0, n)
		return
	}
	mr, nr := g.kern.mr, g.kern.nr
	mp, np := (m+mr-1)/mr, (n+nr-1)/nr
	bm, bn := balance(mp, nt), balance(np, nt)
	if m <= mr || bn > bm || (bn == bm && n*mr >= m*nr) {
		per := (np + nt - 1) / nt
		ParallelFor(np, per, e.colsFn)
		return
	}
	per := (mp + nt - 1) / nt
	if evenRows && m >= nt*mr && (m+nt-1)/nt < per*mr {
		// Whole row panels would leave one goroutine more rows than the
		// others (128 rows on two: 70 and 58): equal ranges instead,
		// each ending in a tile of its own height (64: 4 x 14 + 8).
		e.nt = nt
		ParallelFor(nt, 1, e.evenRowsFn)
		return
	}
	ParallelFor(mp, per, e.rowsFn)
}

// evenRows enables the split into equal row ranges (a switch for the
// benchmarks).
var evenRows = true

// evenRows computes the row ranges [lo, hi) of nt equal ones, every
// column.
func (e *epiJob) evenRows(lo, hi int) {
	m := e.g.m
	e.block(lo*m/e.nt, hi*m/e.nt, 0, e.g.n)
}

// epiJob is one sgemmEpilogue call's product and epilogue (or a plain
// product split by gemmJob.parallel: epi nil), pooled with the
// functions it hands to the worker pool (made once per epiJob, so that a
// call allocates nothing).
type epiJob struct {
	g              gemmJob
	epi            func(i0, i1, j0, j1 int)
	colsFn, rowsFn func(lo, hi int)
	evenRowsFn     func(lo, hi int)
	nt             int // the goroutines evenRows splits the rows over
}

var epiJobs = sync.Pool{New: func() any {
	e := &epiJob{}
	e.colsFn, e.rowsFn, e.evenRowsFn = e.cols, e.rows, e.evenRows
	return e
}}

// block computes C[i0:i1, j0:j1] and runs the epilogue (if any) over it.
func (e *epiJob) block(i0, i1, j0, j1 int) {
	e.g.run(i0, i1, j0, j1)
	if e.epi != nil {
		e.epi(i0, i1, j0, j1)
	}
}

// cols computes the column panels [lo, hi) of C, every row.
func (e *epiJob) cols(lo, hi int) {
	nr := e.g.kern.nr
	e.block(0, e.g.m, lo*nr, min(hi*nr, e.g.n))
}

// rows computes the row panels [lo, hi) of C, every column.
func (e *epiJob) rows(lo, hi int) {
	mr := e.g.kern.mr
	e.block(lo*mr, min(hi*mr, e.g.m), 0, e.g.n)
}
