//go:build !amd64 || purego

package kernels

// Without assembly the Winograd convolution is not offered (winoApplies);
// these run its Go transforms for the tests.

var winoKernelsGo = true

func winoInRows(ph []float32, wp, th int, t, v []float32, vp, tw, lp, lt int) {
	winoInRowsGo(ph, wp, th, t, v, vp, tw, lp, lt)
}

func winoPadDeint(x []float32, h, w, padTop, padLeft, hp, lp int, dst []float32, pm *winoPadMasks) {
	winoPadDeintGo(x, h, w, padTop, padLeft, hp, lp, dst)
}

func winoOutRows(mm []float32, mp, lt, th int, s, o, out []float32, wq, tw int, bias, lo, hi float32, clamp bool) {
	winoOutRowsGo(mm, mp, lt, th, s, o, out, wq, tw, bias, lo, hi, clamp)
}
