//go:build !amd64 || purego

package cpu

// bdwAsmOK reports whether bdwRow3x3 runs p: never without the AVX-512
// kernel.
func bdwAsmOK(p *Conv2DParams) bool { return false }

// bdwRow3x3 is bdwRowGo where there is no AVX-512 kernel.
func bdwRow3x3(p *Conv2DParams, xs, ws []float32, v *bdwVecs, zs, ys []float32, i int) {
	bdwRowGo(p, xs, ws, v, zs, ys, i)
}
