//go:build !amd64 || purego

package kernels

// directAsm says whether the direct convolution's assembly kernel runs;
// without it the tactic is not offered.
const directAsm = false

// convDirectTile is the direct kernel in Go (see the amd64 version).
func convDirectTile(k int, a, src []float32, offs []int32, j0 int, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, n, rows int, z []float32) {
	convDirectTileGo(k, a, src, offs, j0, out, ldc, bias, lo, hi, clampOn, n, rows, z)
}

// convDirectTileK is convDirectTile (the prefetch pf asks for is the
// assembly's).
func convDirectTileK(pf int, k int, a, src []float32, offs []int32, j0 int, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, n, rows int, z []float32) {
	convDirectTile(k, a, src, offs, j0, out, ldc, bias, lo, hi, clampOn, n, rows, z)
}

// convDirectVecs is the vector-gather kernel in Go (see the amd64 version).
func convDirectVecs(nv, k int, a, src []float32, offs []int32, vec *directVecs, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, rows int, z []float32) {
	convDirectVecsGo(nv, k, a, src, offs, vec, out, ldc, bias, lo, hi, clampOn, rows, z)
}
