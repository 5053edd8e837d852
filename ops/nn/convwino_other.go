//go:build !amd64 || purego

package nn

// Without assembly the Winograd convolution is not offered (winoApplies);
// these run its Go transforms for the tests.

var winoKernelsGo = true

func winoDeint4(src []float32, n int, dst []float32, ld int) { winoDeint4Go(src, n, dst, ld) }

func winoBt(n int, src *[6][]float32, dst []float32, ds int) { winoBtGo(n, src, dst, ds) }

func winoAt(n int, src *[6][]float32, dst []float32, ds int) { winoAtGo(n, src, dst, ds) }

func winoInt4(src []float32, ls, n int, dst []float32, bias, lo, hi float32, clamp bool, valid int) {
	winoInt4Go(src, ls, n, dst, bias, lo, hi, clamp, valid)
}
