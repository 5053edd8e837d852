//go:build amd64 && !purego

package fastmath

import "golang.org/x/sys/cpu"

// useAVX2 selects the AVX2+FMA loops of fastmath_amd64.s.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// useAVX512 selects the 16-lane AVX-512F forms of the loops for the
// multiples of 16 (the AVX2 loop then takes 8 more when there are).
var useAVX512 = useAVX2 && cpu.X86.HasAVX512F

//go:noescape
func expAVX512(dst, src *float32, n int)

//go:noescape
func sigmoidAVX512(dst, src *float32, n int)

//go:noescape
func siluAVX512(dst, src *float32, n int)

//go:noescape
func tanhAVX512(dst, src *float32, n int)

//go:noescape
func geluTanhAVX512(dst, src *float32, n int)

//go:noescape
func erfAVX512(dst, src *float32, n int)

//go:noescape
func geluAVX512(dst, src *float32, n int)

//go:noescape
func expShiftedAVX512(dst, src *float32, n int, scale, m float32, sums *[16]float32)

//go:noescape
func expAVX2(dst, src *float32, n int)

//go:noescape
func sigmoidAVX2(dst, src *float32, n int)

//go:noescape
func siluAVX2(dst, src *float32, n int)

//go:noescape
func tanhAVX2(dst, src *float32, n int)

//go:noescape
func geluTanhAVX2(dst, src *float32, n int)

//go:noescape
func erfAVX2(dst, src *float32, n int)

//go:noescape
func geluAVX2(dst, src *float32, n int)

//go:noescape
func expShiftedAVX2(dst, src *float32, n int, scale, m float32, sums *[8]float32)

// split returns how many of n elements the assembly loops compute (the
// multiple of 8; 0 without AVX2 and FMA) and how many of those go through
// the AVX-512 loop (the multiple of 16, where useAVX512). The xxxVec
// functions call the loops directly (a loop passed as a func value would
// make their slices escape, and Gelu's and GeluTanh's stack buffers with them).
func split(n int) (vec, wide int) {
	if !useAVX2 {
		return 0, 0
	}
	vec = n &^ 7
	if useAVX512 {
		wide = n &^ 15
	}
	return vec, wide
}

func expVec(dst, src []float32) int {
	n, k := split(len(dst))
	src = src[:n]
	if k > 0 {
		expAVX512(&dst[0], &src[0], k)
	}
	if k < n {
		expAVX2(&dst[k], &src[k], n-k)
	}
	return n
}

func sigmoidVec(dst, src []float32) int {
	n, k := split(len(dst))
	src = src[:n]
	if k > 0 {
		sigmoidAVX512(&dst[0], &src[0], k)
	}
	if k < n {
		sigmoidAVX2(&dst[k], &src[k], n-k)
	}
	return n
}

func siluVec(dst, src []float32) int {
	n, k := split(len(dst))
	src = src[:n]
	if k > 0 {
		siluAVX512(&dst[0], &src[0], k)
	}
	if k < n {
		siluAVX2(&dst[k], &src[k], n-k)
	}
	return n
}

func tanhVec(dst, src []float32) int {
	n, k := split(len(dst))
	src = src[:n]
	if k > 0 {
		tanhAVX512(&dst[0], &src[0], k)
	}
	if k < n {
		tanhAVX2(&dst[k], &src[k], n-k)
	}
	return n
}

func geluTanhVec(dst, src []float32) int {
	n, k := split(len(dst))
	src = src[:n]
	if k > 0 {
		geluTanhAVX512(&dst[0], &src[0], k)
	}
	if k < n {
		geluTanhAVX2(&dst[k], &src[k], n-k)
	}
	return n
}

func erfVec(dst, src []float32) int {
	n, k := split(len(dst))
	src = src[:n]
	if k > 0 {
		erfAVX512(&dst[0], &src[0], k)
	}
	if k < n {
		erfAVX2(&dst[k], &src[k], n-k)
	}
	return n
}

func geluVec(dst, src []float32) int {
	n, k := split(len(dst))
	src = src[:n]
	if k > 0 {
		geluAVX512(&dst[0], &src[0], k)
	}
	if k < n {
		geluAVX2(&dst[k], &src[k], n-k)
	}
	return n
}

// expShiftedVec is erfVec for ExpShifted, also returning the sum of what
// it computed.
func expShiftedVec(dst, src []float32, scale, m float32) (int, float64) {
	n, k := split(len(dst))
	src = src[:n]
	var sum float64
	if k > 0 {
		var s [16]float32
		expShiftedAVX512(&dst[0], &src[0], k, scale, m, &s)
		for _, v := range s {
			sum += float64(v)
		}
	}
	if k < n {
		var s [8]float32
		expShiftedAVX2(&dst[k], &src[k], n-k, scale, m, &s)
		for _, v := range s {
			sum += float64(v)
		}
	}
	return n, sum
}

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func scaleAddAVX2(dst, src *float32, n int, s float32, add *float32)

// maxVec returns the largest of the first multiple of 8 elements of x (a
// NaN among them may be missed) and how many it read: 0 when there are
// fewer than 8 or no AVX2.
func maxVec(x []float32) (float32, int) {
	n := len(x) &^ 7
	if !useAVX2 || n == 0 {
		return 0, 0
	}
	return maxAVX2(&x[0], n), n
}

// scaleAddVec computes dst = src*s (+ add, when not nil) for the first
// multiple of 8 elements and returns how many it computed.
func scaleAddVec(dst, src []float32, s float32, add []float32) int {
	n := len(dst) &^ 7
	if !useAVX2 || n == 0 {
		return 0
	}
	var a *float32
	if add != nil {
		a = &add[:n][0]
	}
	scaleAddAVX2(&dst[0], &src[:n][0], n, s, a)
	return n
}
