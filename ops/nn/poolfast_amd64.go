//go:build amd64 && !purego

package nn

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
func gatherEvenAVX512(dst, src *float32, blocks int)

// gatherEven sets dst[j] = src[2*j] for every j of dst; src must hold
// 2*len(dst)-1 elements.
func gatherEven(dst, src []float32) {
	if len(dst) == 0 {
		return
	}
	_ = src[2*len(dst)-2]
	blocks := 0
	if poolAsm {
		blocks = min(len(dst)/16, len(src)/32)
		if blocks > 0 {
			gatherEvenAVX512(&dst[0], &src[0], blocks)
		}
	}
	for j := blocks * 16; j < len(dst); j++ {
		dst[j] = src[2*j]
	}
}

//go:noescape
func addClampAVX512(dst, a, z *float32, n int, lo, hi float32, clamp bool)

// addClamp sets dst[i] = a[i] + z[i], clamped to [lo, hi] when clamp is
// set (a and z at least as long as dst).
func addClamp(dst, a, z []float32, lo, hi float32, clamp bool) {
	if len(dst) == 0 {
		return
	}
	_, _ = a[len(dst)-1], z[len(dst)-1]
	if !poolAsm {
		addClampGo(dst, a, z, lo, hi, clamp)
		return
	}
	addClampAVX512(&dst[0], &a[0], &z[0], len(dst), lo, hi, clamp)
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
