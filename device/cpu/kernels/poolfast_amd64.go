//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

// poolAsm says whether the AVX-512 kernels of the fast pooling path run.
var poolAsm = cpu.X86.HasAVX512F

//go:noescape
func poolVAVX512(dst, src *float32, n int, avg bool)

//go:noescape
func poolHAVX512(dst, src *float32, n, k, stride int, avg bool)

// poolV sets dst[i] = max(dst[i], src[i]), or dst[i] += src[i] when avg.
func poolV(dst, src []float32, avg bool) {
	if !poolAsm {
		poolVGo(dst, src, avg)
		return
	}
	if len(dst) == 0 {
		return
	}
	_ = src[len(dst)-1]
	poolVAVX512(&dst[0], &src[0], len(dst), avg)
}

// poolH sets dst[j] to the max (or sum when avg) of src[j*stride+t] for
// t < k; stride is 1 or 2, and src must hold poolHSlack(len(dst), k,
// stride) elements.
func poolH(dst, src []float32, k, stride int, avg bool) {
	if !poolAsm {
		poolHGo(dst, src, k, stride, avg)
		return
	}
	if len(dst) == 0 {
		return
	}
	_ = src[poolHSrcLen(len(dst), k, stride)-1]
	poolHAVX512(&dst[0], &src[0], len(dst), k, stride, avg)
}

//go:noescape
func maxPoolPlaneAVX512(y, x, buf *float32, tab *int, rows, w, ow, k, stride, padL, bufLen int)

// maxPoolPlane computes one plane of a 2-D MaxPool: output rows of
// len(y)/(len(tab)/2) elements from x as tab says (see maxPoolPlaneAVX512);
// buf holds two row buffers, -Inf outside the rows.
func maxPoolPlane(y, x, buf []float32, tab []int, w, k, stride, padL int) {
	if !poolAsm {
		maxPoolPlaneGo(y, x, buf, tab, w, k, stride, padL)
		return
	}
	rows := len(tab) / 2
	if rows == 0 || len(y) == 0 {
		return
	}
	ow := len(y) / rows
	maxPoolPlaneCheck(y, x, buf, tab, w, ow, k, stride, padL)
	maxPoolPlaneAVX512(&y[0], &x[0], &buf[0], &tab[0], rows, w, ow, k, stride, padL, len(buf)/2)
}
