//go:build !amd64 || purego

package nn

// poolAsm says whether assembly kernels of the fast pooling path run.
const poolAsm = false

func poolV(dst, src []float32, avg bool) { poolVGo(dst, src, avg) }

func poolH(dst, src []float32, k, stride int, avg bool) { poolHGo(dst, src, k, stride, avg) }

// gatherEven sets dst[j] = src[2*j] for every j of dst.
func gatherEven(dst, src []float32) {
	for j := range dst {
		dst[j] = src[2*j]
	}
}

func addClamp(dst, a, z []float32, lo, hi float32, clamp bool) { addClampGo(dst, a, z, lo, hi, clamp) }

func maxPoolPlane(y, x, buf []float32, tab []int, w, k, stride, padL int) {
	maxPoolPlaneGo(y, x, buf, tab, w, k, stride, padL)
}
