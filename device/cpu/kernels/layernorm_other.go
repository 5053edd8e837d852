//go:build !amd64 || purego

package kernels

// lnVec returns how many leading elements of a row the vector loops
// handle: none on this platform.
func lnVec(n int) int { return 0 }

func lnSum(x []float32, k int) float32                 { panic("kernels: no vector loops") }
func lnAddSum(dst, x, skip []float32, k int) float32   { panic("kernels: no vector loops") }
func lnSqDev(x []float32, k int, mean float32) float32 { panic("kernels: no vector loops") }
func lnApply(dst, x, gamma, beta []float32, k int, mean, inv float32) {
	panic("kernels: no vector loops")
}
