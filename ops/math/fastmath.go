package math

import "math"

// Single-precision kernels for the activations that dominate real models.
// They are accurate to a few units in the last place of a float32 (the
// tests check them against the float64 functions of package math), avoid
// the float64 round trip, and keep the exponential inline in the loops: the
// scalar forms below are for odd elements and tests.

const (
	log2e  = 1.44269504088896341
	ln2Hi  = 0.693359375
	ln2Lo  = -2.12194440e-4
	expMax = 88.3   // clamp: keeps 2**n a normal float32
	expMin = -87.33 // clamp: no subnormal results
	round  = 12582912.0
	signF  = 1 << 31
)

// expf32 returns e**x for x in [expMin, expMax] (x is clamped to it; NaN
// stays NaN).
func expf32(x float32) float32 {
	if x < expMin {
		x = expMin
	}
	if x > expMax {
		x = expMax
	}
	// n = round(x*log2(e)) by the 1.5*2^23 trick; r = x - n*ln(2);
	// e**r by Cephes' polynomial.
	z := x*log2e + round
	n := int32(math.Float32bits(z)) - 0x4B400000
	fn := z - round
	r := x - fn*ln2Hi
	r -= fn * ln2Lo
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	return (p*r*r + r + 1) * math.Float32frombits(uint32(n+127)<<23)
}

// sigmoidf32 returns 1/(1+e**-x).
func sigmoidf32(x float32) float32 {
	var d [1]float32
	sigmoidF32(d[:], []float32{x})
	return d[0]
}

// tanhf32 returns tanh(x).
func tanhf32(x float32) float32 {
	var d [1]float32
	tanhF32(d[:], []float32{x})
	return d[0]
}

// erff32 returns the error function of x.
func erff32(x float32) float32 {
	var d [1]float32
	erfF32(d[:], []float32{x})
	return d[0]
}

// sigmoidF32 computes dst = 1/(1+e**-src).
func sigmoidF32(dst, src []float32) {
	src = src[:len(dst)]
	for i, x := range src {
		x = -x
		if x < expMin {
			x = expMin
		}
		if x > 89 { // 2**128 is +Inf: the result is 0
			x = 89
		}
		z := x*log2e + round
		n := int32(math.Float32bits(z)) - 0x4B400000
		fn := z - round
		r := x - fn*ln2Hi
		r -= fn * ln2Lo
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		e := (p*r*r + r + 1) * math.Float32frombits(uint32(n+127)<<23)
		dst[i] = 1 / (1 + e)
	}
}

// tanhF32 computes dst = tanh(src) as -m/(m+2) with m = expm1(-2|x|), and
// the sign of x. expm1 is 2**n (e**r - 1) + (2**n - 1) with e**r - 1 from
// the polynomial directly, so small |x| keep their precision.
func tanhF32(dst, src []float32) {
	src = src[:len(dst)]
	for i, x := range src {
		u := math.Float32bits(x)
		a := math.Float32frombits(u &^ signF)
		if a > 9 { // tanh is 1 in float32
			a = 9
		}
		y := -2 * a
		z := y*log2e + round
		n := int32(math.Float32bits(z)) - 0x4B400000
		fn := z - round
		r := y - fn*ln2Hi
		r -= fn * ln2Lo
		p := float32(1.9875691500e-4)
		p = p*r + 1.3981999507e-3
		p = p*r + 8.3334519073e-3
		p = p*r + 4.1665795894e-2
		p = p*r + 1.6666665459e-1
		p = p*r + 5.0000001201e-1
		s := math.Float32frombits(uint32(n+127) << 23)
		m := s*(r+r*r*p) + (s - 1)
		t := -m / (m + 2)
		dst[i] = math.Float32frombits(math.Float32bits(t) | u&signF)
	}
}

// erfF32 computes dst = erf(src): the Taylor series below 1, Abramowitz and
// Stegun 7.1.26 (absolute error under 1.5e-7) from 1 to 4, and 1 above.
func erfF32(dst, src []float32) {
	src = src[:len(dst)]
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
			// e**-a² inline
			x := -a * a
			z := x*log2e + round
			n := int32(math.Float32bits(z)) - 0x4B400000
			fn := z - round
			r := x - fn*ln2Hi
			r -= fn * ln2Lo
			p := float32(1.9875691500e-4)
			p = p*r + 1.3981999507e-3
			p = p*r + 8.3334519073e-3
			p = p*r + 4.1665795894e-2
			p = p*r + 1.6666665459e-1
			p = p*r + 5.0000001201e-1
			e := (p*r*r + r + 1) * math.Float32frombits(uint32(n+127)<<23)
			y = 1 - q*t*e
		}
		dst[i] = math.Float32frombits(math.Float32bits(y) | u&signF)
	}
}
