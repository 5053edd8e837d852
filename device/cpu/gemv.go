package cpu

var gemvPool floatPool

// gemv computes y = alpha*x*op(M) + beta*y for a row vector x of length k
// and a k x n matrix op(M), on at most nt goroutines. When mTrans is set, M
// is stored n x k (each y[j] is a dot product of x with row j of M),
// otherwise k x n. x is xs[0:k] or, when xStrided, xs[p*ldx] for p < k. y[j]
// is y[j*incy]. beta == 0 overwrites y without reading it.
func gemv(kern *kernel, mTrans bool, n, k int, alpha float32, xs []float32, ldx int, xStrided bool, mat []float32, ldm int, beta float32, y []float32, incy int, nt int) {
	bufp := gemvPool.get(k + n)
	buf := *bufp
	x := xs[:k]
	if xStrided && ldx != 1 {
		x = buf[:k]
		for p := range x {
			x[p] = xs[p*ldx]
		}
	}
	t := buf[k : k+n]
	finish := func(lo, hi int) {
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
	if mTrans {
		groups := (n + 3) / 4
		ParallelFor(groups, (groups+nt-1)/nt, func(lo, hi int) {
			j0, j1 := 4*lo, min(4*hi, n)
			j := j0
			for ; j+4 <= j1; j += 4 {
				kern.dot4(k, &x[0], &mat[j*ldm], ldm, &t[j])
			}
			if j < j1 {
				var out [4]float32
				for ; j < j1; j++ {
					// The same row four times: stays inside mat.
					kern.dot4(k, &x[0], &mat[j*ldm], 0, &out[0])
					t[j] = out[0]
				}
			}
			finish(j0, j1)
		})
	} else {
		al := kern.nAlign
		blocks := (n + al - 1) / al
		ParallelFor(blocks, (blocks+nt-1)/nt, func(lo, hi int) {
			j0, j1 := lo*al, min(hi*al, n)
			kern.gemvN(k, &x[0], &mat[j0], ldm, &t[j0], j1-j0)
			finish(j0, j1)
		})
	}
	gemvPool.put(bufp)
}

// smallMDots computes C = alpha*A*B^T + beta*C for an m x k matrix A with m
// small and an n x k matrix B, as dot products that read B in place.
func smallMDots(kern *kernel, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, nt int) {
	groups := (n + 3) / 4
	ParallelFor(groups, (groups+nt-1)/nt, func(lo, hi int) {
		out := new([4]float32)
		j0, j1 := 4*lo, min(4*hi, n)
		for j := j0; j < j1; j += 4 {
			if j+4 <= j1 {
				for i := 0; i < m; i++ {
					kern.dot4(k, &a[i*lda], &b[j*ldb], ldb, &out[0])
					axpby(c[i*ldc+j:][:4], out[:], alpha, beta)
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
	})
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
