//go:build !amd64 || purego

package nn

// poolAsm says whether assembly kernels of the direct convolution's
// helpers run.
const poolAsm = false

// gatherEven sets dst[j] = src[2*j] for every j of dst.
func gatherEven(dst, src []float32) {
	for j := range dst {
		dst[j] = src[2*j]
	}
}

func addClamp(dst, a, z []float32, lo, hi float32, clamp bool) { addClampGo(dst, a, z, lo, hi, clamp) }
