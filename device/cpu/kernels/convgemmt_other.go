//go:build !amd64 || purego

package kernels

var gemmTKernelGo = true

func gemmTOut(y []float32, hw int, yt []float32, ldy, i0, i1, j0, j1 int, bias, z []float32, lo, hi float32, clamp bool) {
	gemmTOutGo(y, hw, yt, ldy, i0, i1, j0, j1, bias, z, lo, hi, clamp)
}

func gemmTIn(xt []float32, ldx int, x []float32, plane int, pos []int32, c0, c1 int) {
	gemmTInGo(xt, ldx, x, plane, pos, c0, c1)
}

func gemmTIm2col(xt []float32, ldx int, src []float32, offs, pos []int32) {
	gemmTIm2colGo(xt, ldx, src, offs, pos)
}
