//go:build !amd64 || purego

package kernels

import "unsafe"

// directAsm says whether the direct convolution's assembly kernel runs;
// without it the tactic is not offered.
const directAsm = false

// convDirectTile is the direct kernel in Go (see the amd64 version).
func convDirectTile(k int, a, src []float32, offs []int32, j0 int, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, n, rows int, z []float32) {
	bs := unsafe.Slice(bias, directMR)
	for r := 0; r < rows; r++ {
		for j := 0; j < n; j++ {
			s := bs[r]
			for q := 0; q < k; q++ {
				s += a[q*directMR+r] * src[int(offs[q])+j0+j]
			}
			if z != nil {
				s += z[r*ldc+j]
			}
			if clampOn {
				s = min(max(s, lo), hi)
			}
			out[r*ldc+j] = s
		}
	}
}

// convDirectTileK is convDirectTile (the prefetch pf asks for is the
// assembly's).
func convDirectTileK(pf int, k int, a, src []float32, offs []int32, j0 int, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, n, rows int, z []float32) {
	convDirectTile(k, a, src, offs, j0, out, ldc, bias, lo, hi, clampOn, n, rows, z)
}

// convDirectVecs is the vector-gather kernel in Go (see the amd64 version).
func convDirectVecs(nv, k int, a, src []float32, offs []int32, vec *directVecs, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, rows int, z []float32) {
	bs := unsafe.Slice(bias, directMR)
	for v := 0; v < nv; v++ {
		for r := 0; r < rows; r++ {
			for j := 0; j < 16; j++ {
				if vec.mask[v]>>j&1 == 0 {
					continue
				}
				s := bs[r]
				for q := 0; q < k; q++ {
					s += a[q*directMR+r] * src[int(offs[q])+int(vec.in[v])+j]
				}
				o := r*ldc + int(vec.out[v]) + j
				if z != nil {
					s += z[o]
				}
				if clampOn {
					s = min(max(s, lo), hi)
				}
				out[o] = s
			}
		}
	}
}
