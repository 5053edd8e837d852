package kernels

import "github.com/kilnai/kiln/device/cpu"

// siluGrain is how many floats one goroutine's share of a SiLU pass
// should at least hold.
const siluGrain = 1 << 13

// convSiLUPar applies SiLU to y in place on up to cpu.Threads() goroutines
// (convSiLU per range).
func convSiLUPar(y []float32) {
	cpu.ParallelFor(len(y), siluGrain, func(lo, hi int) { convSiLU(y[lo:hi], y[lo:hi]) })
}
