package image

import (
	"math"
	"math/bits"
	"math/cmplx"
)

// fftPlan computes discrete Fourier transforms of one length n:
// X[k] = sum_j x[j] exp(-2 pi i jk/n). Powers of two use an iterative
// radix-2 FFT, small other lengths a direct sum over a twiddle table, and
// large other lengths Bluestein's chirp-z algorithm on a power-of-two FFT.
type fftPlan struct {
	n  int
	tw []complex128 // exp(-2 pi i k/n), k < n (direct and radix-2)
	// Bluestein
	chirp []complex128 // exp(-pi i k^2/n), k < n
	bhat  []complex128 // FFT of the conjugate chirp, wrapped, length m
	sub   *fftPlan     // power-of-two plan of length m
}

// directMax is the largest non-power-of-two length summed directly.
const directMax = 64

func newFFTPlan(n int) *fftPlan {
	p := &fftPlan{n: n}
	if n <= directMax || n&(n-1) == 0 {
		p.tw = make([]complex128, n)
		for k := range p.tw {
			p.tw[k] = twiddle(k, n)
		}
		return p
	}
	m := 1 << bits.Len(uint(2*n-2))
	p.sub = newFFTPlan(m)
	p.chirp = make([]complex128, n)
	for k := range p.chirp {
		// k^2 mod 2n keeps the angle accurate for large k
		kk := (uint64(k) * uint64(k)) % uint64(2*n)
		s, c := math.Sincos(-math.Pi * float64(kk) / float64(n))
		p.chirp[k] = complex(c, s)
	}
	p.bhat = make([]complex128, m)
	p.bhat[0] = cmplx.Conj(p.chirp[0])
	for k := 1; k < n; k++ {
		p.bhat[k] = cmplx.Conj(p.chirp[k])
		p.bhat[m-k] = cmplx.Conj(p.chirp[k])
	}
	p.sub.transform(p.bhat, nil)
	return p
}

// twiddle returns exp(-2 pi i k/n).
func twiddle(k, n int) complex128 {
	s, c := math.Sincos(-2 * math.Pi * float64(k) / float64(n))
	return complex(c, s)
}

// scratchLen is the length of the scratch buffer transform needs.
func (p *fftPlan) scratchLen() int {
	switch {
	case p.sub != nil:
		return len(p.bhat)
	case p.n&(p.n-1) != 0:
		return p.n
	}
	return 0
}

// transform replaces x (length n) by its DFT. scratch must hold at least
// scratchLen elements (nil allocates).
func (p *fftPlan) transform(x, scratch []complex128) {
	n := p.n
	if n <= 1 {
		return
	}
	if len(scratch) < p.scratchLen() {
		scratch = make([]complex128, p.scratchLen())
	}
	switch {
	case n&(n-1) == 0:
		p.radix2(x)
	case p.sub == nil:
		y := scratch[:n]
		for k := 0; k < n; k++ {
			var s complex128
			idx := 0
			for j := 0; j < n; j++ {
				s += x[j] * p.tw[idx]
				idx += k
				if idx >= n {
					idx -= n
				}
			}
			y[k] = s
		}
		copy(x, y)
	default:
		m := len(p.bhat)
		a := scratch[:m]
		for k := 0; k < n; k++ {
			a[k] = x[k] * p.chirp[k]
		}
		for k := n; k < m; k++ {
			a[k] = 0
		}
		p.sub.radix2(a)
		for k := range a {
			a[k] *= p.bhat[k]
		}
		// inverse by conjugation
		for k := range a {
			a[k] = cmplx.Conj(a[k])
		}
		p.sub.radix2(a)
		inv := 1 / float64(m)
		for k := 0; k < n; k++ {
			x[k] = cmplx.Conj(a[k]) * complex(inv, 0) * p.chirp[k]
		}
	}
}

// radix2 is the in-place iterative Cooley-Tukey FFT (n a power of two).
func (p *fftPlan) radix2(x []complex128) {
	n := p.n
	shift := 64 - bits.Len(uint(n-1))
	for i := 0; i < n; i++ {
		j := int(bits.Reverse64(uint64(i)) >> shift)
		if j > i {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		half, step := size>>1, n/size
		for start := 0; start < n; start += size {
			for k := 0; k < half; k++ {
				t := p.tw[k*step] * x[start+k+half]
				u := x[start+k]
				x[start+k] = u + t
				x[start+k+half] = u - t
			}
		}
	}
}
