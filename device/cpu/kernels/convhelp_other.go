//go:build !amd64 || purego

package kernels

// The direct convolution's helpers in Go (poolAsm, poolfast_other.go, is
// false).

// gatherEven sets dst[j] = src[2*j] for every j of dst.
func gatherEven(dst, src []float32) {
	for j := range dst {
		dst[j] = src[2*j]
	}
}

func addClamp(dst, a, z []float32, lo, hi float32, clamp bool) { addClampGo(dst, a, z, lo, hi, clamp) }
