package fastmath

import "math"

const (
	log2e  = 1.44269504088896341
	ln2Hi  = 0.693359375
	ln2Lo  = -2.12194440e-4
	expMax = 88.3       // clamp: keeps 2**n a normal float32
	expMin = -87.33     // clamp: no subnormal results
	round  = 12582912.0 // 1.5 * 2**23: adding it rounds to an integer
	signF  = 1 << 31
	sqrt2  = 1.41421356237309504880168872420969808
	// block is the length of the stack buffers the composite functions
	// work through.
	block = 256
)

// The exponential, written out inline in each loop below (the compiler
// would not inline a function this size): n = round(x*log2(e)) by adding
// 1.5*2**23, r = x - n*ln(2) in two parts, e**r by Cephes' polynomial, and
// 2**n from z's low mantissa bits (n + 0x400000; the rest of z's bits
// vanish when shifted by 23 in 32 bits).

// Exp computes dst = e**src, src clamped to [-87.33, 88.3] (NaN stays NaN).
func Exp(dst, src []float32) {
	src = src[:len(dst)]
	k := expVec(dst, src)
	dst, src = dst[k:], src[k:]
	for i, x := range src {
		if x < expMin {
			x = expMin
		}
		if x > expMax {
			x = expMax
		}
		z := x*log2e + round
		fn := z - round
		r := x - fn*ln2Hi
		r -= fn * ln2Lo
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		dst[i] = (p*r*r + r + 1) * math.Float32frombits((math.Float32bits(z)+127)<<23)
	}
}

// Exp32 returns e**x, x clamped to [-87.33, 88.3].
func Exp32(x float32) float32 {
	var d [1]float32
	Exp(d[:], []float32{x})
	return d[0]
}

// ExpShifted computes dst = e**(src*scale - m), where m is no smaller than
// any src*scale, and returns the sum of dst (in float64): the numerators and the
// denominator of a softmax. Results below the smallest normal float32
// (arguments below -87.33) are 0.
func ExpShifted(dst, src []float32, scale, m float32) float64 {
	src = src[:len(dst)]
	k, s := expShiftedVec(dst, src, scale, m)
	dst, src = dst[k:], src[k:]
	for i, x := range src {
		x = x*scale - m
		if x < expMin {
			dst[i] = 0
			continue
		}
		z := x*log2e + round
		fn := z - round
		r := x - fn*ln2Hi
		r -= fn * ln2Lo
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		e := (p*r*r + r + 1) * math.Float32frombits((math.Float32bits(z)+127)<<23)
		dst[i] = e
		s += float64(e)
	}
	return s
}

// Sigmoid computes dst = 1/(1+e**-src).
func Sigmoid(dst, src []float32) {
	src = src[:len(dst)]
	k := sigmoidVec(dst, src)
	dst, src = dst[k:], src[k:]
	for i, x := range src {
		x = -x
		if x < expMin {
			x = expMin
		}
		if x > 89 { // 2**128 is +Inf: the result is 0
			x = 89
		}
		z := x*log2e + round
		fn := z - round
		r := x - fn*ln2Hi
		r -= fn * ln2Lo
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		e := (p*r*r + r + 1) * math.Float32frombits((math.Float32bits(z)+127)<<23)
		dst[i] = 1 / (1 + e)
	}
}

// SiLU computes dst = src/(1+e**-src) (src*Sigmoid(src), also called
// Swish).
func SiLU(dst, src []float32) {
	src = src[:len(dst)]
	k := siluVec(dst, src)
	dst, src = dst[k:], src[k:]
	for i, v := range src {
		x := -v
		if x < expMin {
			x = expMin
		}
		if x > 89 { // 2**128 is +Inf: the result is -0
			x = 89
		}
		z := x*log2e + round
		fn := z - round
		r := x - fn*ln2Hi
		r -= fn * ln2Lo
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		e := (p*r*r + r + 1) * math.Float32frombits((math.Float32bits(z)+127)<<23)
		dst[i] = v / (1 + e)
	}
}

// Tanh computes dst = tanh(src) as -m/(m+2) with m = expm1(-2|x|), and the
// sign of x. expm1 is 2**n (e**r - 1) + (2**n - 1) with e**r - 1 from the
// polynomial directly, so small |x| keep their precision.
func Tanh(dst, src []float32) {
	src = src[:len(dst)]
	k := tanhVec(dst, src)
	dst, src = dst[k:], src[k:]
	for i, x := range src {
		u := math.Float32bits(x)
		a := math.Float32frombits(u &^ signF)
		if a > 9 { // tanh is 1 in float32
			a = 9
		}
		y := -2 * a
		z := y*log2e + round
		fn := z - round
		r := y - fn*ln2Hi
		r -= fn * ln2Lo
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		s := math.Float32frombits((math.Float32bits(z) + 127) << 23)
		m := s*(r+r*r*p) + (s - 1)
		t := -m / (m + 2)
		dst[i] = math.Float32frombits(math.Float32bits(t) | u&signF)
	}
}

// Erf computes dst = erf(src): the Taylor series below 1, Abramowitz and
// Stegun 7.1.26 (absolute error under 1.5e-7) from 1 to 4, and 1 above.
func Erf(dst, src []float32) {
	src = src[:len(dst)]
	k := erfVec(dst, src)
	dst, src = dst[k:], src[k:]
	for i, x := range src {
		u := math.Float32bits(x)
		a := math.Float32frombits(u &^ signF)
		var y float32
		if a < 1 {
			// 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)), to n = 10
			s := a * a
			p := float32(1.0 / 76204800)
			p = p*s - 1.0/6894720
			p = p*s + 1.0/685440
			p = p*s - 1.0/75600
			p = p*s + 1.0/9360
			p = p*s - 1.0/1320
			p = p*s + 1.0/216
			p = p*s - 1.0/42
			p = p*s + 1.0/10
			p = p*s - 1.0/3
			p = p*s + 1
			y = a * p * 1.1283791670955126
		} else {
			if a > 4 { // erf is 1 in float32
				a = 4
			}
			t := 1 / (1 + 0.3275911*a)
			q := float32(1.061405429)
			q = q*t - 1.453152027
			q = q*t + 1.421413741
			q = q*t - 0.284496736
			q = q*t + 0.254829592
			x := -a * a // e**-a² inline
			z := x*log2e + round
			fn := z - round
			r := x - fn*ln2Hi
			r -= fn * ln2Lo
			p := float32(1.9875691500e-4)
			p = p*r + 1.3981999507e-3
			p = p*r + 8.3334519073e-3
			p = p*r + 4.1665795894e-2
			p = p*r + 1.6666665459e-1
			p = p*r + 5.0000001201e-1
			e := (p*r*r + r + 1) * math.Float32frombits((math.Float32bits(z)+127)<<23)
			y = 1 - q*t*e
		}
		dst[i] = math.Float32frombits(math.Float32bits(y) | u&signF)
	}
}

// Gelu computes dst = 0.5*src*(1+erf(src/sqrt(2))).
func Gelu(dst, src []float32) {
	src = src[:len(dst)]
	k := geluVec(dst, src)
	dst, src = dst[k:], src[k:]
	var t [block]float32
	for lo := 0; lo < len(dst); lo += block {
		hi := min(lo+block, len(dst))
		s, d, tb := src[lo:hi], dst[lo:hi], t[:hi-lo]
		for i, x := range s {
			tb[i] = x * (1 / sqrt2)
		}
		Erf(tb, tb)
		for i, x := range s {
			d[i] = 0.5 * x * (1 + tb[i])
		}
	}
}

// GeluTanh computes dst = 0.5*src*(1+tanh(sqrt(2/pi)*(src+0.044715*src**3))).
func GeluTanh(dst, src []float32) {
	const c = 0.7978845608028654 // sqrt(2/pi)
	src = src[:len(dst)]
	k := geluTanhVec(dst, src)
	dst, src = dst[k:], src[k:]
	var t [block]float32
	for lo := 0; lo < len(dst); lo += block {
		hi := min(lo+block, len(dst))
		s, d, tb := src[lo:hi], dst[lo:hi], t[:hi-lo]
		for i, x := range s {
			tb[i] = c * (x + 0.044715*x*x*x)
		}
		Tanh(tb, tb)
		for i, x := range s {
			d[i] = 0.5 * x * (1 + tb[i])
		}
	}
}

// Max returns the largest element of a non-empty slice. A NaN in x may or
// may not be returned (callers that go on to exponentiate x get NaN from
// it anyway).
func Max(x []float32) float32 {
	m, k := maxVec(x)
	if k == 0 {
		m = x[0]
	}
	for _, v := range x[k:] {
		if v > m {
			m = v
		}
	}
	return m
}

// ScaleAdd computes dst = src*s + add, or dst = src*s when add is nil
// (add, like src, at least as long as dst).
func ScaleAdd(dst, src []float32, s float32, add []float32) {
	src = src[:len(dst)]
	if add != nil {
		add = add[:len(dst)]
	}
	k := scaleAddVec(dst, src, s, add)
	if add != nil {
		for i, x := range src[k:] {
			dst[k+i] = x*s + add[k+i]
		}
		return
	}
	for i, x := range src[k:] {
		dst[k+i] = x * s
	}
}
