package kernels

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

// planeMaxGo is planeMax in Go: GlobalMaxPool's rule (globalPool), a NaN
// kept only where it comes first and nothing but NaNs follows.
func planeMaxGo(y, x []float32, size int) {
	for p := range y {
		xp := x[p*size : (p+1)*size]
		m := xp[0]
		for _, v := range xp[1:] {
			if v > m || m != m {
				m = v
			}
		}
		y[p] = m
	}
}

// globalMaxF32 is GlobalMaxPool of float32 planes (size > 0): planeMax,
// over the cores from poolSplitMin elements on.
func globalMaxF32(planes, size int, x, y []float32) {
	if planes*size < poolSplitMin || cpu.Threads() == 1 {
		planeMax(y[:planes], x[:planes*size], size)
		return
	}
	grain := max(1, (poolSplitMin/2)/size)
	cpu.ParallelFor(planes, grain, func(lo, hi int) {
		planeMax(y[lo:hi], x[lo*size:hi*size], size)
	})
}

// globalAvgF32 is GlobalAveragePool of float32 planes: the vector sums of
// planeSums, then the division by the plane size; over the cores from
// poolSplitMin elements on.
func globalAvgF32(planes, size int, x, y []float32) {
	if planes*size < poolSplitMin || cpu.Threads() == 1 {
		globalAvgRange(y[:planes], x[:planes*size], size)
		return
	}
	grain := max(1, (poolSplitMin/2)/size)
	cpu.ParallelFor(planes, grain, func(lo, hi int) {
		globalAvgRange(y[lo:hi], x[lo*size:hi*size], size)
	})
}

// globalAvgRange is globalAvgF32 of the len(y) planes of x on the caller.
func globalAvgRange(y, x []float32, size int) {
	planeSums(y, x, size)
	for p := range y {
		y[p] /= float32(size)
	}
}
