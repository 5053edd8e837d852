//go:build !amd64 || purego

package kernels

// poolAsm says whether assembly kernels of the fast pooling path run.
const poolAsm = false

func poolV(dst, src []float32, avg bool) { poolVGo(dst, src, avg) }

func poolH(dst, src []float32, k, stride int, avg bool) { poolHGo(dst, src, k, stride, avg) }

func maxPoolPlane(y, x, buf []float32, tab []int, w, k, stride, padL int) {
	maxPoolPlaneGo(y, x, buf, tab, w, k, stride, padL)
}
