//go:build amd64 && !purego

package fastmath

import "golang.org/x/sys/cpu"

// useAVX2 selects the AVX2+FMA loops of fastmath_amd64.s.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func erfAVX2(dst, src *float32, n int)

//go:noescape
func geluAVX2(dst, src *float32, n int)

//go:noescape
func expShiftedAVX2(dst, src *float32, n int, scale, m float32, sums *[8]float32)

// erfVec computes Erf of the first multiple of 8 elements it can and
// returns how many it computed.
func erfVec(dst, src []float32) int {
	n := len(dst) &^ 7
	if !useAVX2 || n == 0 {
		return 0
	}
	erfAVX2(&dst[0], &src[:n][0], n)
	return n
}

// geluVec is erfVec for Gelu.
func geluVec(dst, src []float32) int {
	n := len(dst) &^ 7
	if !useAVX2 || n == 0 {
		return 0
	}
	geluAVX2(&dst[0], &src[:n][0], n)
	return n
}

// expShiftedVec is erfVec for ExpShifted, also returning the sum of what
// it computed.
func expShiftedVec(dst, src []float32, scale, m float32) (int, float64) {
	n := len(dst) &^ 7
	if !useAVX2 || n == 0 {
		return 0, 0
	}
	var s [8]float32
	expShiftedAVX2(&dst[0], &src[:n][0], n, scale, m, &s)
	var sum float64
	for _, v := range s {
		sum += float64(v)
	}
	return n, sum
}
