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
