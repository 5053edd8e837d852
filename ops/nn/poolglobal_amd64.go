//go:build amd64 && !purego

package nn

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
