//go:build amd64 && !purego

package kernels

import "github.com/kilnai/kiln/internal/fastmath"

//go:generate go run gen_convsilu_amd64.go

// convSiLU sets dst[i] = src[i] * Sigmoid(src[i]) with siluAVX512 where the
// CPU has AVX-512 (16 lanes, the division as a reciprocal and one Newton
// step), else with fastmath.SiLU. dst and src are the same length, and
// may be the same slice.
func convSiLU(dst, src []float32) {
	if len(dst) == 0 {
		return
	}
	src = src[:len(dst)]
	if !directAsm {
		fastmath.SiLU(dst, src)
		return
	}
	siluAVX512(&dst[0], &src[0], len(dst))
}

//go:noescape
func siluAVX512(dst, src *float32, n int)
