//go:build !amd64 || purego

package nn

// Without assembly the Winograd convolution is not offered (winoApplies);
// these run its Go transforms for the tests.

var winoKernelsGo = true

func winoDeint4(src []float32, n int, dst []float32, ld, count, so, do int) {
	winoDeint4Go(src, n, dst, ld, count, so, do)
}

func winoBt(n, count int, src []float32, offs *[6]int, so int, dst []float32, ds, do int) {
	winoBtGo(n, count, src, offs, so, dst, ds, do)
}

func winoAt(n, count int, src []float32, offs *[6]int, so int, dst []float32, ds, do int) {
	winoAtGo(n, count, src, offs, so, dst, ds, do)
}

func winoInt4(src []float32, ls, n int, dst []float32, bias, lo, hi float32, clamp bool, valid, count, so, do int) {
	winoInt4Go(src, ls, n, dst, bias, lo, hi, clamp, valid, count, so, do)
}

func winoInRows(ph []float32, wp, th int, t, v []float32, vp, tw, lp, lt int) {
	winoInRowsGo(ph, wp, th, t, v, vp, tw, lp, lt)
}

func winoPadDeint(x []float32, h, w, padTop, padLeft, hp, lp int, dst []float32, masks []uint16) {
	winoPadDeintGo(x, h, w, padTop, padLeft, hp, lp, dst)
}

func winoOutRows(mm []float32, mp, lt, th int, s, o, out []float32, wq, tw int, bias, lo, hi float32, clamp bool) {
	winoOutRowsGo(mm, mp, lt, th, s, o, out, wq, tw, bias, lo, hi, clamp)
}
