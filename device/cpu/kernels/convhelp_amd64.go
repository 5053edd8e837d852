//go:build amd64 && !purego

package kernels

// The AVX-512 kernels of the direct convolution's helpers (gatherEven,
// addClamp) run when poolAsm (poolfast_amd64.go) is set: they came with the
// pooling kernels.

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
