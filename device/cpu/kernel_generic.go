package cpu

import "unsafe"

// genericKernel is the pure-Go kernel: always available, always tested.
var genericKernel = &kernel{
	name:    "generic",
	mr:      4,
	nr:      4,
	gemm:    gemmKernelGo,
	gemvN:   gemvNGo,
	dot4:    dot4Go,
	nAlign:  64,
	dw3x3s1: dw3x3s1Go,
	dw3x3s2: dw3x3s2Go,
	gather2: gather2Go,
}

// gather2Go is the pure-Go gather2.
func gather2Go(dst, src []float32) {
	if len(dst) == 0 {
		return
	}
	src = src[:2*len(dst)-1]
	for i := range dst {
		dst[i] = src[2*i]
	}
}

// gemmKernelGo is the 4x4 pure-Go micro-kernel.
func gemmKernelGo(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32) {
	as := unsafe.Slice(a, 3*lda+k)
	bs := unsafe.Slice(b, (k-1)*ldb+4)
	a0s, a1s, a2s, a3s := as[:k], as[lda:lda+k], as[2*lda:2*lda+k], as[3*lda:3*lda+k]
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	for p := range a0s {
		bp := bs[p*ldb : p*ldb+4 : p*ldb+4]
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		a0 := a0s[p]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		a1 := a1s[p]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		a2 := a2s[p]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		a3 := a3s[p]
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	cs := unsafe.Slice(c, 3*ldc+4)
	store4(cs[0:4:4], c00, c01, c02, c03, alpha, beta)
	store4(cs[ldc:ldc+4:ldc+4], c10, c11, c12, c13, alpha, beta)
	store4(cs[2*ldc:2*ldc+4:2*ldc+4], c20, c21, c22, c23, alpha, beta)
	store4(cs[3*ldc:3*ldc+4:3*ldc+4], c30, c31, c32, c33, alpha, beta)
}

func store4(c []float32, v0, v1, v2, v3, alpha, beta float32) {
	if beta == 0 {
		c[0], c[1], c[2], c[3] = alpha*v0, alpha*v1, alpha*v2, alpha*v3
		return
	}
	c[0] = alpha*v0 + beta*c[0]
	c[1] = alpha*v1 + beta*c[1]
	c[2] = alpha*v2 + beta*c[2]
	c[3] = alpha*v3 + beta*c[3]
}

// gemvNGo is the pure-Go gemvN.
func gemvNGo(k int, x, b *float32, ldb int, y *float32, n int) {
	xs := unsafe.Slice(x, k)
	bs := unsafe.Slice(b, (k-1)*ldb+n)
	ys := unsafe.Slice(y, n)
	clear(ys)
	i := 0
	for ; i+4 <= k; i += 4 {
		x0, x1, x2, x3 := xs[i], xs[i+1], xs[i+2], xs[i+3]
		r0 := bs[i*ldb : i*ldb+n]
		r1 := bs[(i+1)*ldb : (i+1)*ldb+n]
		r2 := bs[(i+2)*ldb : (i+2)*ldb+n]
		r3 := bs[(i+3)*ldb : (i+3)*ldb+n]
		for j := range ys {
			ys[j] += x0*r0[j] + x1*r1[j] + x2*r2[j] + x3*r3[j]
		}
	}
	for ; i < k; i++ {
		xi := xs[i]
		r := bs[i*ldb : i*ldb+n]
		for j := range ys {
			ys[j] += xi * r[j]
		}
	}
}

// dot4Go is the pure-Go dot4.
func dot4Go(k int, x, b *float32, ldb int, out *float32) {
	xs := unsafe.Slice(x, k)
	bs := unsafe.Slice(b, 3*ldb+k)
	r0 := bs[:k]
	r1 := bs[ldb : ldb+k]
	r2 := bs[2*ldb : 2*ldb+k]
	r3 := bs[3*ldb : 3*ldb+k]
	var s0, s1, s2, s3 float32
	for p, v := range xs {
		s0 += v * r0[p]
		s1 += v * r1[p]
		s2 += v * r2[p]
		s3 += v * r3[p]
	}
	o := unsafe.Slice(out, 4)
	o[0], o[1], o[2], o[3] = s0, s1, s2, s3
}
