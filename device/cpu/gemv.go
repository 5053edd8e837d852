package cpu

var gemvPool floatPool

// gemv computes y = alpha*x*op(M) + beta*y for a row vector x of length k
// and a k x n matrix op(M), on at most nt goroutines. When mTrans is set, M
// is stored n x k (each y[j] is a dot product of x with row j of M),
// otherwise k x n. x is xs[0:k] or, when xStrided, xs[p*ldx] for p < k. y[j]
// is y[j*incy]. beta == 0 overwrites y without reading it.
func gemv(kern *kernel, mTrans bool, n, k int, alpha float32, xs []float32, ldx int, xStrided bool, mat []float32, ldm int, beta float32, y []float32, incy int, nt int) {
	bufp := gemvPool.get(k + n + 4)
	buf := *bufp
	x := xs[:k]
	if xStrided && ldx != 1 {
		x = buf[:k]
		for p := range x {
			x[p] = xs[p*ldx]
		}
	}
	g := gemvJob{kern: kern, n: n, k: k, alpha: alpha, x: x, mat: mat, ldm: ldm, beta: beta, y: y, incy: incy, t: buf[k : k+n], tail: buf[k+n : k+n+4]}
	units := (n + kern.nAlign - 1) / kern.nAlign
	if mTrans {
		units = (n + 3) / 4
	}
	switch grain := (units + nt - 1) / nt; {
	case grain >= units && !tracing:
		// one chunk, which ParallelFor would run on the caller: called
		// directly, nothing to allocate for a closure
		if mTrans {
			g.dotGroups(0, units)
		} else {
			g.nBlocks(0, units)
		}
	case mTrans:
		g2 := g
		ParallelFor(units, grain, g2.dotGroups)
	default:
		g2 := g
		ParallelFor(units, grain, g2.nBlocks)
	}
	gemvPool.put(bufp)
}

// gemvJob is one gemv: y = alpha*mat*x + beta*y via the scratch t.
type gemvJob struct {
	kern   *kernel
	n, k   int
	alpha  float32
	x, mat []float32
	ldm    int
	beta   float32
	y      []float32
	incy   int
	t      []float32
	tail   []float32 // 4 elements of scratch for the last outputs of dotGroups
}

// dotGroups computes outputs [4*lo, 4*hi) of a transposed gemv as dot
// products of rows of mat.
func (g *gemvJob) dotGroups(lo, hi int) {
	kern, k, x, mat, ldm, t := g.kern, g.k, g.x, g.mat, g.ldm, g.t
	j0, j1 := 4*lo, min(4*hi, g.n)
	j := j0
	for ; j+4 <= j1; j += 4 {
		kern.dot4(k, &x[0], &mat[j*ldm], ldm, &t[j])
	}
	if j < j1 {
		// (only the chunk holding output n-1 gets here: tail is its own)
		out := g.tail
		for ; j < j1; j++ {
			// The same row four times: stays inside mat.
			kern.dot4(k, &x[0], &mat[j*ldm], 0, &out[0])
			t[j] = out[0]
		}
	}
	g.finish(j0, j1)
}

// nBlocks computes the outputs of blocks [lo, hi) of nAlign columns.
func (g *gemvJob) nBlocks(lo, hi int) {
	al := g.kern.nAlign
	j0, j1 := lo*al, min(hi*al, g.n)
	g.kern.gemvN(g.k, &g.x[0], &g.mat[j0], g.ldm, &g.t[j0], j1-j0)
	g.finish(j0, j1)
}

// finish sets y[j] = alpha*t[j] + beta*y[j] for j in [lo, hi).
func (g *gemvJob) finish(lo, hi int) {
	alpha, beta, y, t, incy := g.alpha, g.beta, g.y, g.t, g.incy
	if incy == 1 {
		yr := y[lo:hi]
		tr := t[lo:hi]
		if beta == 0 {
			for j, v := range tr {
				yr[j] = alpha * v
			}
			return
		}
		for j, v := range tr {
			yr[j] = alpha*v + beta*yr[j]
		}
		return
	}
	for j := lo; j < hi; j++ {
		if beta == 0 {
			y[j*incy] = alpha * t[j]
		} else {
			y[j*incy] = alpha*t[j] + beta*y[j*incy]
		}
	}
}

// smallMDots computes C = alpha*A*B^T + beta*C for an m x k matrix A with m
// small and an n x k matrix B, as dot products that read B in place.
func smallMDots(kern *kernel, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, nt int) {
	d := smallMJob{kern: kern, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	groups := (n + 3) / 4
	if grain := (groups + nt - 1) / nt; grain < groups || tracing {
		d2 := d
		ParallelFor(groups, grain, d2.run)
		return
	}
	d.run(0, groups) // one chunk, on the caller: no closure to allocate
}

// smallMJob is one smallMDots.
type smallMJob struct {
	kern        *kernel
	m, n, k     int
	alpha, beta float32
	a, b, c     []float32
	lda, ldb    int
	ldc         int
}

// dotsPool holds the 4 floats of a smallMJob.run's dot products.
var dotsPool floatPool

// run computes the output columns [4*lo, 4*hi).
func (d *smallMJob) run(lo, hi int) {
	kern, m, k, a, lda, b, ldb, c, ldc, alpha, beta := d.kern, d.m, d.k, d.a, d.lda, d.b, d.ldb, d.c, d.ldc, d.alpha, d.beta
	outp := dotsPool.get(4)
	out := *outp
	j0, j1 := 4*lo, min(4*hi, d.n)
	for j := j0; j < j1; j += 4 {
		if j+4 <= j1 {
			for i := 0; i < m; i++ {
				kern.dot4(k, &a[i*lda], &b[j*ldb], ldb, &out[0])
				axpby(c[i*ldc+j:][:4], out[:4], alpha, beta)
			}
			continue
		}
		// A ragged last group: one row of B at a time, never read past it.
		for jj := j; jj < j1; jj++ {
			for i := 0; i < m; i++ {
				kern.dot4(k, &a[i*lda], &b[jj*ldb], 0, &out[0])
				axpby(c[i*ldc+jj:][:1], out[:1], alpha, beta)
			}
		}
	}
	dotsPool.put(outp)
}

// axpby sets y = alpha*x + beta*y; beta == 0 overwrites y.
func axpby(y, x []float32, alpha, beta float32) {
	x = x[:len(y)]
	if beta == 0 {
		for i, v := range x {
			y[i] = alpha * v
		}
		return
	}
	for i, v := range x {
		y[i] = alpha*v + beta*y[i]
	}
}
