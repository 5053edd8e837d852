//go:build !amd64 || purego

package cpu

// dwDirectAsm reports false: there are no AVX-512 kernels here, and
// dwDirect runs depthwise.
func dwDirectAsm() bool { return false }

func dwFlatS1(in []float32, w, off int, wt, dst []float32, g *dwGeom, b, lo, hi float32) {
	panic("cpu: no depthwise assembly on this platform")
}

func dwFlatS1x2(in0, in1 []float32, w, off int, wt0, wt1, dst0, dst1 []float32, g *dwGeom, b0, b1, lo, hi float32) {
	panic("cpu: no depthwise assembly on this platform")
}

func dwFlatS1Run(in []float32, hw, w, off int, wt, bias, dst []float32, g *dwGeom, npairs int, lo, hi float32) {
	panic("cpu: no depthwise assembly on this platform")
}

func dwRowsS2Run(in []float32, hw, padLeft int, wt, bias, dst []float32, oh, ow int, g *dwGeom, nplanes int, lo, hi float32) {
	panic("cpu: no depthwise assembly on this platform")
}

func dwRowsS2(in []float32, padLeft int, wt, dst []float32, oh, ow int, g *dwGeom, b, lo, hi float32) {
	panic("cpu: no depthwise assembly on this platform")
}

// biasClampRow reports false: there is no assembly for it here.
func biasClampRow(row []float32, b, lo, hi float32) bool { return false }
