//go:build amd64 && !purego

package kernels

import "math"

//go:noescape
func planeSumsAVX512(y, x *float32, planes, size int)

// planeSums sets y[p] to the sum of plane p of x (planes of size
// elements, len(y) planes).
func planeSums(y, x []float32, size int) {
	if len(y) == 0 || size == 0 || !poolAsm {
		planeSumsGo(y, x, size)
		return
	}
	_ = x[len(y)*size-1]
	planeSumsAVX512(&y[0], &x[0], len(y), size)
}

//go:noescape
func planeMaxAVX512(y, x *float32, planes, size int)

// planeMax sets y[p] to the max of plane p of x (planes of size > 0
// elements, len(y) planes) as planeMaxGo does.
func planeMax(y, x []float32, size int) {
	if len(y) == 0 || size == 0 || !poolAsm {
		planeMaxGo(y, x, size)
		return
	}
	_ = x[len(y)*size-1]
	planeMaxAVX512(&y[0], &x[0], len(y), size)
	for p, v := range y {
		if math.IsInf(float64(v), -1) {
			// -Inf, or NaNs left out: the order-dependent answer of
			// planeMaxGo
			planeMaxGo(y[p:p+1], x[p*size:(p+1)*size], size)
		}
	}
}
