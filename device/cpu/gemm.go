package cpu

import (
	"fmt"
)

// Sgemm computes C = alpha*op(A)*op(B) + beta*C on row-major float32
// matrices, with BLAS semantics: op(X) is X, or its transpose when transX is
// set; op(A) is m x k, op(B) is k x n and C is m x n; lda, ldb and ldc are
// the row strides of A, B and C as stored. When beta is zero, C is
// overwritten without being read (NaNs in it do not propagate).
//
// The product is blocked for the caches and packed (Goto/BLIS style), run by
// a register-blocked micro-kernel in assembly where the CPU allows (ISA), and
// split over Threads() goroutines. m == 1 and n == 1 take a GEMV path.
// Sgemm panics if a size is negative, a stride is too small, or a slice is
// too short for the sizes given.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, Threads())
}

// SgemmStridedBatched computes batch independent products
// C_i = alpha*op(A_i)*op(B_i) + beta*C_i, where A_i starts at
// a[i*strideA:], B_i at b[i*strideB:] and C_i at c[i*strideC:]; a stride of
// zero shares one matrix between all products (a broadcast MatMul operand).
// Small products are spread over the cores, large ones are each split.
func SgemmStridedBatched(transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, batch int) {
	sgemmStridedBatched(Blocking{}, transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch)
}

// sgemmStridedBatched is SgemmStridedBatched with the cache blocking bl
// (the zero Blocking is the default one).
func sgemmStridedBatched(bl Blocking, transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, batch int) {
	if batch < 0 || strideA < 0 || strideB < 0 || strideC < 0 {
		panic(fmt.Sprintf("cpu: SgemmStridedBatched: negative batch or stride (batch=%d strides=%d,%d,%d)", batch, strideA, strideB, strideC))
	}
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	if batch > 1 && strideC < (m-1)*ldc+n {
		panic(fmt.Sprintf("cpu: SgemmStridedBatched: strideC=%d overlaps the %dx%d matrices of C (ldc=%d)", strideC, m, n, ldc))
	}
	nt := Threads()
	work := m * n * max(k, 1)
	if batch >= nt && work < 1<<22 {
		// Many small products: one goroutine each, no splitting inside.
		ParallelFor(batch, 1, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				sgemmBlocked(bl, transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, c[i*strideC:], ldc, 1)
			}
		})
		return
	}
	for i := 0; i < batch; i++ {
		sgemmBlocked(bl, transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, c[i*strideC:], ldc, nt)
	}
}

// checkMatrix panics unless s holds a rows x cols row-major matrix with row
// stride ld.
func checkMatrix(name string, s []float32, rows, cols, ld int) {
	if ld < max(cols, 1) {
		panic(fmt.Sprintf("cpu: Sgemm: ld%s=%d < %d", name, ld, max(cols, 1)))
	}
	if rows > 0 && cols > 0 && len(s) < (rows-1)*ld+cols {
		panic(fmt.Sprintf("cpu: Sgemm: len(%s)=%d < %d for a %dx%d matrix with stride %d", name, len(s), (rows-1)*ld+cols, rows, cols, ld))
	}
}

// sgemm is Sgemm on at most nt goroutines.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, nt int) {
	sgemmBlocked(Blocking{}, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nt)
}

// sgemmBlocked is sgemm with the cache blocking bl of the packed path (the
// zero Blocking is the default one).
func sgemmBlocked(bl Blocking, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, nt int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("cpu: Sgemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	if transA {
		checkMatrix("a", a, k, m, lda)
	} else {
		checkMatrix("a", a, m, k, lda)
	}
	if transB {
		checkMatrix("b", b, n, k, ldb)
	} else {
		checkMatrix("b", b, k, n, ldb)
	}
	checkMatrix("c", c, m, n, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleMatrix(c, m, n, ldc, beta)
		return
	}
	// Below about 128K multiply-adds a goroutine costs more than it saves;
	// above, each one gets at least 64K.
	if w := int64(m) * int64(n) * int64(k); w < 1<<17 {
		nt = 1
	} else {
		nt = int(min(int64(nt), w>>16))
	}
	kern := active
	switch {
	case m == 1:
		// x = op(A) as a row, matrix = B.
		gemv(kern, transB, n, k, alpha, a, lda, transA, b, ldb, beta, c, 1, nt)
		return
	case n == 1:
		// C^T = op(B)^T op(A)^T: x = op(B) as a column, matrix = A.
		gemv(kern, !transA, m, k, alpha, b, ldb, !transB, a, lda, beta, c, ldc, nt)
		return
	case transB && m <= 8 && !transA:
		// Few rows against a transposed B (a fully-connected layer on a
		// small batch): dot products read B in place instead of packing
		// it.
		smallMDots(kern, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nt)
		return
	}
	g := gemmJob{
		kern: kern, transA: transA, transB: transB,
		m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, blk: bl,
	}
	g.parallel(nt)
}

// parallel computes the whole product on at most nt goroutines, each
// taking a range of rows or of columns of C. It allocates nothing: g
// stays the caller's (copied into a pooled epiJob when the work splits).
func (g *gemmJob) parallel(nt int) {
	if nt <= 1 {
		g.run(0, g.m, 0, g.n)
		return
	}
	e := epiJobs.Get().(*epiJob)
	e.g, e.epi = *g, nil
	e.split(nt)
	e.g = gemmJob{} // drop the caller's memory
	epiJobs.Put(e)
}

// balance is how evenly p panels split over nt goroutines: the mean share
// over the largest one, in percent.
func balance(p, nt int) int {
	nt = min(nt, p)
	largest := (p + nt - 1) / nt
	return 100 * p / (nt * largest)
}

// scaleMatrix sets C = beta*C (C = 0 when beta is zero).
func scaleMatrix(c []float32, m, n, ldc int, beta float32) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		if beta == 1 {
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// gemmJob is one call of the packed GEMM.
type gemmJob struct {
	kern           *kernel
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
	// When bRow is set, B (not transposed) is read in blocks of rows that
	// never cross a multiple of kSeg: block rows p, p+1, ... start at
	// b[bRow(p)], b[bRow(p)+ldb], ... An implicit convolution reads its
	// input this way, one kernel tap per segment.
	bRow func(p int) int
	kSeg int
	// blk, when not zero, replaces the default cache blocking (blockMC,
	// blockKC, blockNC).
	blk Blocking
	// pb, when not nil, is B packed once for the kernel (PackB): used
	// instead of b, never packed again.
	pb *PackedB
	// bias, when not nil, is added to every row of C once the product is
	// final (bias[j] to column j): by the kernel as it stores the last K
	// block's tiles where it can (kernel.edgeBias), else after it.
	bias []float32
}

var (
	packAPool floatPool
	packBPool floatPool
)

// packing overrides, for tests, when the packed GEMM copies A and B.
var packing = packAuto

const (
	packAuto   = iota // by shape and stride
	packAlways        // copy A and B
	packNever         // use A and B in place unless transposed
)

// run computes the block C[i0:i1, j0:j1] on the calling goroutine.
func (g *gemmJob) run(i0, i1, j0, j1 int) {
	mr, nr := g.kern.mr, g.kern.nr
	bmc, bkc, bnc := blockMC, blockKC, blockNC
	if g.blk != (Blocking{}) {
		bmc, bkc, bnc = g.blk.MC, g.blk.KC, g.blk.NC
	}
	kcMax := bkc
	mcMax := max(mr, bmc/mr*mr)
	ncMax := max(nr, bnc/nr*nr)
	rows := i1 - i0
	// The kernel reads A and B through row strides, so either can be used
	// in place. A is copied when it must be transposed, or when its rows are
	// 4 KiB apart and would crowd a few L1 sets. B is used in place when
	// each of its panels serves few micro-kernel calls (then packing costs
	// more than it saves), unless its rows are 4 KiB aligned or so far apart
	// that each step of the kernel touches a new page (packing streams
	// them in, which the prefetchers handle better). Ragged edge panels are
	// copied unless the kernel has an edge variant, which reads only what it
	// needs.
	directA := !g.transA && g.lda%1024 != 0
	directB := !g.transB && (rows <= mr || rows <= 8*mr && g.ldb%1024 != 0 && g.ldb <= 2048)
	switch packing {
	case packAlways:
		directA, directB = false, false
	case packNever:
		directA, directB = !g.transA, !g.transB
	}
	if g.pb != nil {
		directB = true // no packing buffer: pb is read in place below
	}
	mc0 := min(mcMax, rows)
	nc0 := min(ncMax, j1-j0)
	kc0 := min(kcMax, g.k)
	asize := (mc0 + mr - 1) / mr * mr * kc0
	if directA {
		asize = mr * kc0
	}
	bsize := (nc0 + nr - 1) / nr * nr * kc0
	if directB {
		bsize = nr * kc0
	}
	biasIn := g.bias != nil && g.kern.edgeBias != nil
	abufp := packAPool.get(asize + maxMR*maxNR)
	abuf := *abufp
	tmp := abuf[asize:]
	bbufp := packBPool.get(bsize)
	bbuf := *bbufp
	for jc := j0; jc < j1; jc += ncMax {
		nc := min(ncMax, j1-jc)
		for pc, kc := 0, 0; pc < g.k; pc += kc {
			kc = min(kcMax, g.k-pc)
			boff := pc * g.ldb // first element of B's row pc, when not transposed
			if g.bRow != nil {
				kc = min(kc, g.kSeg-pc%g.kSeg)
				boff = g.bRow(pc)
			}
			beta := g.beta
			if pc > 0 {
				beta = 1
			}
			switch {
			case directB || g.pb != nil:
			case g.transB:
				packB(bbuf, g.b, g.ldb, true, pc, kc, jc, nc, nr)
			default:
				packB(bbuf, g.b[boff:], g.ldb, false, 0, kc, jc, nc, nr)
			}
			for ic := i0; ic < i1; ic += mcMax {
				mc := min(mcMax, i1-ic)
				if !directA {
					packA(abuf, g.a, g.lda, g.transA, ic, mc, pc, kc, mr)
				} else if edge := mc % mr; edge != 0 && g.kern.edge == nil {
					packA(abuf, g.a, g.lda, false, ic+mc-edge, edge, pc, kc, mr)
				}
				// A last tile of 1-3 rows keeps too few accumulators in
				// flight to hide the FMA latency (and reloads B for
				// them): with an edge kernel, the last full tile and it
				// become two tiles of about equal height (128 rows: 8
				// tiles of 14 and two of 8 instead of 9 and one of 2).
				split := -1
				if e := mc % mr; g.kern.edge != nil && mc > mr && e != 0 && e < edgeMinRows {
					split = mc - e - mr
				}
				for jr := 0; jr < nc; jr += nr {
					nrr := min(nr, nc-jr)
					var bp *float32
					bld := nr
					switch {
					case g.pb != nil:
						bp, bld = &g.pb.data[(jc+jr)/nr*g.k*nr+pc*nr], nr
					case !directB:
						bp = &bbuf[jr*kc]
					case nrr == nr || g.kern.edge != nil:
						bp = &g.b[boff+jc+jr]
						bld = g.ldb
					default:
						packB(bbuf, g.b[boff:], g.ldb, false, 0, kc, jc+jr, nrr, nr)
						bp = &bbuf[0]
					}
					for ir, mrr := 0, 0; ir < mc; ir += mrr {
						mrr = min(mr, mc-ir)
						if ir == split {
							mrr = (mc - ir + 1) / 2
						}
						var ap *float32
						ald := kc
						switch {
						case !directA:
							ap = &abuf[ir*kc]
						case mrr == mr || g.kern.edge != nil:
							ap = &g.a[(ic+ir)*g.lda+pc]
							ald = g.lda
						default:
							ap = &abuf[0]
						}
						ci := (ic+ir)*g.ldc + jc + jr
						if biasIn && pc+kc == g.k {
							g.kern.edgeBias(mrr, nrr, kc, ap, ald, bp, bld, &g.c[ci], g.ldc, g.alpha, beta, &g.bias[jc+jr])
							continue
						}
						if mrr == mr && nrr == nr {
							g.kern.gemm(kc, ap, ald, bp, bld, &g.c[ci], g.ldc, g.alpha, beta)
							continue
						}
						if g.kern.edge != nil {
							g.kern.edge(mrr, nrr, kc, ap, ald, bp, bld, &g.c[ci], g.ldc, g.alpha, beta)
							continue
						}
						g.kern.gemm(kc, ap, ald, bp, bld, &tmp[0], nr, 1, 0)
						mergeTile(g.c[ci:], g.ldc, tmp, nr, mrr, nrr, g.alpha, beta)
					}
				}
			}
		}
	}
	packAPool.put(abufp)
	packBPool.put(bbufp)
	if g.bias != nil && !biasIn {
		addBias(g.c, g.ldc, g.bias, i0, i1, j0, j1)
	}
}

// addBias adds bias[j] to C[i][j] for i in [i0, i1), j in [j0, j1).
func addBias(c []float32, ldc int, bias []float32, i0, i1, j0, j1 int) {
	bs := bias[j0:j1]
	for i := i0; i < i1; i++ {
		row := c[i*ldc+j0 : i*ldc+j1]
		for j, v := range bs {
			row[j] += v
		}
	}
}

// edgeMinRows is the smallest last row tile run as it is; a shorter one
// is merged with the full tile before it into two of about equal height.
var edgeMinRows = 4

// mergeTile sets C = alpha*T + beta*C on an mr x nr corner of C.
func mergeTile(c []float32, ldc int, t []float32, ldt, mr, nr int, alpha, beta float32) {
	for i := 0; i < mr; i++ {
		cr := c[i*ldc : i*ldc+nr]
		tr := t[i*ldt : i*ldt+nr]
		if beta == 0 {
			for j, v := range tr {
				cr[j] = alpha * v
			}
			continue
		}
		for j, v := range tr {
			cr[j] = alpha*v + beta*cr[j]
		}
	}
}

// packA copies rows [i0, i0+mc) and columns [p0, p0+kc) of op(A) into dst
// as a row-major block with row stride kc, zero rows added up to a multiple
// of mr.
func packA(dst, a []float32, lda int, trans bool, i0, mc, p0, kc, mr int) {
	if trans {
		// op(A)[i][p] = a[p*lda+i]: each source row is a column of dst.
		for p := 0; p < kc; p++ {
			src := a[(p0+p)*lda+i0:][:mc]
			for r, v := range src {
				dst[r*kc+p] = v
			}
		}
	} else {
		for r := 0; r < mc; r++ {
			copy(dst[r*kc:r*kc+kc], a[(i0+r)*lda+p0:][:kc])
		}
	}
	clear(dst[mc*kc : (mc+mr-1)/mr*mr*kc])
}

// packB copies rows [p0, p0+kc) and columns [j0, j0+nc) of op(B) into dst
// as ceil(nc/nr) micro-panels of kc x nr, row by row, ragged columns
// zero-padded.
func packB(dst, b []float32, ldb int, trans bool, p0, kc, j0, nc, nr int) {
	if !trans {
		for p := 0; p < kc; p++ {
			src := b[(p0+p)*ldb+j0:][:nc]
			for jr := 0; jr < nc; jr += nr {
				nrr := min(nr, nc-jr)
				d := dst[jr*kc+p*nr:][:nr]
				copy(d, src[jr:jr+nrr])
				clear(d[nrr:])
			}
		}
		return
	}
	// op(B)[p][j] = b[j*ldb+p]: gather columns of the panel.
	for jr := 0; jr < nc; jr += nr {
		nrr := min(nr, nc-jr)
		panel := dst[jr*kc : jr*kc+kc*nr]
		c := 0
		for ; c+4 <= nrr; c += 4 {
			s0 := b[(j0+jr+c)*ldb+p0:][:kc]
			s1 := b[(j0+jr+c+1)*ldb+p0:][:kc]
			s2 := b[(j0+jr+c+2)*ldb+p0:][:kc]
			s3 := b[(j0+jr+c+3)*ldb+p0:][:kc]
			for p := range s0 {
				d := panel[p*nr+c : p*nr+c+4 : p*nr+c+4]
				d[0], d[1], d[2], d[3] = s0[p], s1[p], s2[p], s3[p]
			}
		}
		for ; c < nrr; c++ {
			src := b[(j0+jr+c)*ldb+p0:][:kc]
			for p, v := range src {
				panel[p*nr+c] = v
			}
		}
		if nrr < nr {
			for p := 0; p < kc; p++ {
				clear(panel[p*nr+nrr : p*nr+nr])
			}
		}
	}
}
