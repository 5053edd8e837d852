package nn

import "github.com/kilnai/kiln/device/cpu"

// planeSumsGo is planeSums in Go.
func planeSumsGo(y, x []float32, size int) {
	for p := range y {
		var s float32
		for _, v := range x[p*size : (p+1)*size] {
			s += v
		}
		y[p] = s
	}
}

// globalAvgF32 is GlobalAveragePool of float32 planes: the vector sums of
// planeSums over the cores, then the division by the plane size.
func globalAvgF32(planes, size int, x, y []float32) {
	grain := max(1, (1<<13)/max(1, size))
	cpu.ParallelFor(planes, grain, func(lo, hi int) {
		planeSums(y[lo:hi], x[lo*size:hi*size], size)
		for p := lo; p < hi; p++ {
			y[p] /= float32(size)
		}
	})
}
