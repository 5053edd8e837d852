//go:build !amd64 || purego

package cpu

// bdwAsmOK reports whether bdwBand3x3 runs p: never without the AVX-512
// kernel.
func bdwAsmOK(p *Conv2DParams) bool { return false }

// bdwBand3x3 is bdwRowGo on rows [i0, i1).
func bdwBand3x3(p *Conv2DParams, g *bdwGeom, xs, ws []float32, v *bdwVecs, zs, ys []float32, i0, i1 int) {
	for i := i0; i < i1; i++ {
		bdwRowGo(p, xs, ws, v, zs, ys, i)
	}
}

// bdwTapsOK reports whether bdwRowTaps runs p: never without the AVX-512
// kernel.
func bdwTapsOK(p *Conv2DParams) bool { return false }

// bdwRowTaps is bdwRowGo where there is no AVX-512 kernel.
func bdwRowTaps(p *Conv2DParams, g *bdwGeom, xs, ws []float32, v *bdwVecs, zs, ys []float32, i int) {
	bdwRowGo(p, xs, ws, v, zs, ys, i)
}
