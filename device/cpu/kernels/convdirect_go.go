package kernels

import "unsafe"

// The direct kernels in Go: what the assembly computes (convdirect_amd64.go),
// run where it cannot (other architectures, amd64 without AVX-512).

// convDirectTileGo is convDirectTile in Go.
func convDirectTileGo(k int, a, src []float32, offs []int32, j0 int, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, n, rows int, z []float32) {
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

// convDirectVecsGo is convDirectVecs in Go.
func convDirectVecsGo(nv, k int, a, src []float32, offs []int32, vec *directVecs, out []float32, ldc int, bias *float32, lo, hi float32, clampOn bool, rows int, z []float32) {
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
