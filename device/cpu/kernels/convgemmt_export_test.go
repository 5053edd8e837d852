package kernels

import "github.com/kilnai/kiln/device/cpu"

// GemmTConv returns the transposed-GEMM convolution of p with the
// weights w packed once, as the "gemm-t" tactic runs it (ReLU in p.Act), or
// nil when it does not apply (for the benchmarks of package nn_test).
func GemmTConv(p cpu.Conv2DParams, w []float32) func(x, bias, y []float32) {
	if !gemmTApplies(p) {
		return nil
	}
	f := newGemmTFilter(w, p.M, p.C, p.KH, p.KW)
	return func(x, bias, y []float32) { convGemmT(p, x, f, bias, y, nil, nil) }
}

// GemmTOffered reports whether FusedConv offers the "gemm-t" tactic for p.
func GemmTOffered(p cpu.Conv2DParams) bool { return gemmTOffered(p) }

// SetDirectPrefetch turns the pointwise direct kernel's prefetch of the next
// tile on or off (benchmarks compare).
func SetDirectPrefetch(on bool) { directNoPF = !on }
