package math

import "math"

// Single-precision kernels for the activations that dominate real models.
// They are accurate to a few units in the last place of a float32 (the
// tests check them against the float64 functions of package math) and avoid
// the float64 round trip.

const (
	log2e  = 1.44269504088896341
	ln2Hi  = 0.693359375
	ln2Lo  = -2.12194440e-4
	expMax = 88.3   // above: +Inf (keeps 2^n a normal float32)
	expMin = -87.33 // below: 0 (no subnormal results)
	round  = 12582912.0
)

// expf32 returns e**x for float32 x; results that would be subnormal are 0,
// and x above 88.3 gives +Inf. NaN gives NaN.
func expf32(x float32) float32 {
	switch {
	case x > expMax:
		return float32(math.Inf(1))
	case x < expMin:
		return 0
	case x != x:
		return x
	}
	// n = round(x*log2(e)) by the 1.5*2^23 trick; r = x - n*ln(2).
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
	y := p*r*r + r + 1
	return y * math.Float32frombits(uint32(n+127)<<23)
}

// sigmoidf32 returns 1/(1+e**-x).
func sigmoidf32(x float32) float32 { return 1 / (1 + expf32(-x)) }

// tanhf32 returns tanh(x): a rational function near zero, 1-2/(e**2|x|+1)
// elsewhere.
func tanhf32(x float32) float32 {
	a := x
	if a < 0 {
		a = -a
	}
	switch {
	case a < 0.625:
		s := x * x
		return x + x*s*((-0.964399179425052238628*s-99.2877231001918586564)*s-1614.68768441708447952)/
			(((s+112.811678491632931402)*s+2235.48839060100448583)*s+4844.06305325125486048)
	case a > 9:
		if x < 0 {
			return -1
		}
		return 1
	case x != x:
		return x
	}
	t := 1 - 2/(expf32(2*a)+1)
	if x < 0 {
		return -t
	}
	return t
}

// erff32 returns the error function of x: its Taylor series below 1, and
// Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7) above.
func erff32(x float32) float32 {
	a := x
	if a < 0 {
		a = -a
	}
	switch {
	case a < 1:
		// 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)), to n = 10
		s := x * x
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
		return x * p * 1.1283791670955126 // 2/sqrt(pi)
	case a >= 4:
		if x < 0 {
			return -1
		}
		return 1
	case x != x:
		return x
	}
	t := 1 / (1 + 0.3275911*a)
	q := float32(1.061405429)
	q = q*t - 1.453152027
	q = q*t + 1.421413741
	q = q*t - 0.284496736
	q = q*t + 0.254829592
	y := 1 - q*t*expf32(-a*a)
	if x < 0 {
		return -y
	}
	return y
}
