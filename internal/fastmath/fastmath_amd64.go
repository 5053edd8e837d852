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

// vec runs the assembly loops over the first multiple of 8 elements of
// dst (src at least as long): f16 (AVX-512) over the multiple of 16 where
// the machine has it, f over the rest. It returns how many it computed: 0
// without AVX2 and FMA.
func vec(f, f16 func(dst, src *float32, n int), dst, src []float32) int {
	n := len(dst) &^ 7
	if !useAVX2 || n == 0 {
		return 0
	}
	src = src[:n]
	k := 0
	if useAVX512 {
		k = n &^ 15
		if k > 0 {
			f16(&dst[0], &src[0], k)
		}
	}
	if k < n {
		f(&dst[k], &src[k], n-k)
	}
	return n
}

func expVec(dst, src []float32) int      { return vec(expAVX2, expAVX512, dst, src) }
func sigmoidVec(dst, src []float32) int  { return vec(sigmoidAVX2, sigmoidAVX512, dst, src) }
func siluVec(dst, src []float32) int     { return vec(siluAVX2, siluAVX512, dst, src) }
func tanhVec(dst, src []float32) int     { return vec(tanhAVX2, tanhAVX512, dst, src) }
func geluTanhVec(dst, src []float32) int { return vec(geluTanhAVX2, geluTanhAVX512, dst, src) }
func erfVec(dst, src []float32) int      { return vec(erfAVX2, erfAVX512, dst, src) }
func geluVec(dst, src []float32) int     { return vec(geluAVX2, geluAVX512, dst, src) }

// expShiftedVec is erfVec for ExpShifted, also returning the sum of what
// it computed.
func expShiftedVec(dst, src []float32, scale, m float32) (int, float64) {
	n := len(dst) &^ 7
	if !useAVX2 || n == 0 {
		return 0, 0
	}
	src = src[:n]
	var sum float64
	k := 0
	if useAVX512 {
		k = n &^ 15
		if k > 0 {
			var s [16]float32
			expShiftedAVX512(&dst[0], &src[0], k, scale, m, &s)
			for _, v := range s {
				sum += float64(v)
			}
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
