package fastmath

import (
	"fmt"
	"math"
	"testing"
)

// one applies a slice function to a single element, through the vector
// loop (element 0 of 17: the 16-lane loop where forPaths chose it) and the
// scalar tail (element 16), and fails t when
// the two differ by more than a unit in the last place (or in NaN-ness).
func one(t *testing.T, name string, f func(dst, src []float32)) func(float32) float32 {
	return func(x float32) float32 {
		s := make([]float32, 17)
		for i := range s {
			s[i] = x
		}
		d := make([]float32, 17)
		f(d, s)
		v, w := d[0], d[16]
		if (v != v) != (w != w) || v == v && v != w && math.Abs(float64(v-w)) > 1.2e-7*math.Abs(float64(w)) {
			t.Errorf("%s(%g): vector %g, scalar %g", name, x, v, w)
		}
		return v
	}
}

func gelu(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

func geluTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(0.7978845608028654*(x+0.044715*x*x*x)))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func TestAccuracy(t *testing.T) { forPaths(t, testAccuracy) }

func testAccuracy(t *testing.T) {
	for _, c := range []struct {
		name       string
		f          func(dst, src []float32)
		g          func(float64) float64
		lo, hi     float64
		rtol, atol float64
	}{
		{name: "exp", f: Exp, g: math.Exp, lo: -87, hi: 88, rtol: 4e-7},
		{name: "sigmoid", f: Sigmoid, g: sigmoid, lo: -80, hi: 80, rtol: 4e-7},
		{name: "silu", f: SiLU, g: func(x float64) float64 { return x * sigmoid(x) }, lo: -80, hi: 80, rtol: 5e-7},
		{name: "tanh", f: Tanh, g: math.Tanh, lo: -12, hi: 12, rtol: 4e-7},
		{name: "tanh small", f: Tanh, g: math.Tanh, lo: -1e-3, hi: 1e-3, rtol: 2e-7},
		{name: "tanh tiny", f: Tanh, g: math.Tanh, lo: -1e-30, hi: 1e-30, rtol: 2e-7},
		{name: "erf", f: Erf, g: math.Erf, lo: -6, hi: 6, rtol: 5e-7},
		{name: "erf small", f: Erf, g: math.Erf, lo: -1e-3, hi: 1e-3, rtol: 2e-7},
		// Gelu's relative error near its zero at -0.75... is no better than
		// erf's absolute error: atol covers it.
		{name: "gelu", f: Gelu, g: gelu, lo: -12, hi: 12, rtol: 6e-7, atol: 3e-7},
		{name: "gelu small", f: Gelu, g: gelu, lo: -1e-3, hi: 1e-3, rtol: 3e-7},
		{name: "gelu tanh", f: GeluTanh, g: geluTanh, lo: -12, hi: 12, rtol: 6e-7, atol: 3e-7},
	} {
		t.Run(c.name, func(t *testing.T) {
			const n = 200001
			src := make([]float32, n)
			for i := range src {
				src[i] = float32(c.lo + (c.hi-c.lo)*float64(i)/(n-1))
			}
			dst := make([]float32, n)
			c.f(dst, src)
			worst := 0.0
			for i, x := range src {
				want, got := c.g(float64(x)), float64(dst[i])
				d := math.Abs(got - want)
				if !(d <= c.atol+c.rtol*math.Abs(want)) {
					t.Fatalf("%s(%g) = %g, want %g", c.name, x, got, want)
				}
				if want != 0 {
					worst = math.Max(worst, d/math.Abs(want))
				}
			}
			t.Logf("worst relative error %.3g", worst)
			// In place gives the same results.
			c.f(src, src)
			for i := range src {
				if src[i] != dst[i] && !(src[i] != src[i] && dst[i] != dst[i]) {
					t.Fatalf("in place: element %d is %g, want %g", i, src[i], dst[i])
				}
			}
		})
	}
}

func TestSpecialValues(t *testing.T) { forPaths(t, testSpecialValues) }

func testSpecialValues(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, f := range []struct {
		name string
		f    func(dst, src []float32)
	}{{"Exp", Exp}, {"Sigmoid", Sigmoid}, {"SiLU", SiLU}, {"Tanh", Tanh}, {"Erf", Erf}, {"Gelu", Gelu}, {"GeluTanh", GeluTanh}} {
		if y := one(t, f.name, f.f)(nan); y == y {
			t.Errorf("%s(NaN) = %g", f.name, y)
		}
	}
	for _, c := range []struct {
		name string
		got  float32
		ok   func(float32) bool
	}{
		{"Sigmoid(-100)", one(t, "Sigmoid", Sigmoid)(-100), func(y float32) bool { return y >= 0 && y <= 1e-38 }},
		{"Sigmoid(100)", one(t, "Sigmoid", Sigmoid)(100), func(y float32) bool { return y == 1 }},
		{"Sigmoid(-Inf)", one(t, "Sigmoid", Sigmoid)(-inf), func(y float32) bool { return y >= 0 && y <= 1e-38 }},
		{"SiLU(-100)", one(t, "SiLU", SiLU)(-100), func(y float32) bool { return y == 0 }},
		{"SiLU(Inf)", one(t, "SiLU", SiLU)(inf), func(y float32) bool { return y == inf }},
		{"Tanh(-100)", one(t, "Tanh", Tanh)(-100), func(y float32) bool { return y == -1 }},
		{"Tanh(-Inf)", one(t, "Tanh", Tanh)(-inf), func(y float32) bool { return y == -1 }},
		{"Erf(100)", one(t, "Erf", Erf)(100), func(y float32) bool { return y == 1 }},
		{"Erf(Inf)", one(t, "Erf", Erf)(inf), func(y float32) bool { return y == 1 }},
		{"Gelu(-100)", one(t, "Gelu", Gelu)(-100), func(y float32) bool { return y == 0 }},
		{"Gelu(100)", one(t, "Gelu", Gelu)(100), func(y float32) bool { return y == 100 }},
		{"GeluTanh(100)", one(t, "GeluTanh", GeluTanh)(100), func(y float32) bool { return y == 100 }},
		{"Exp(1000)", one(t, "Exp", Exp)(1000), func(y float32) bool { return y > 1e38 && y != inf }},
		{"Exp(-1000)", one(t, "Exp", Exp)(-1000), func(y float32) bool { return y > 0 && y < 1e-37 }},
	} {
		if !c.ok(c.got) {
			t.Errorf("%s = %g", c.name, c.got)
		}
	}
}

func TestExpShifted(t *testing.T) { forPaths(t, testExpShifted) }

func testExpShifted(t *testing.T) {
	for _, c := range []struct {
		name     string
		src      []float32
		scale, m float32
	}{
		{"plain", []float32{1, 2, 3, -4}, 1, 3},
		{"scaled", []float32{10, -20, 30, 0, 5}, 0.125, 3.75},
		{"flushed", []float32{0, -1000, -88}, 1, 0},
		{"empty", nil, 1, 0},
		{"long", long(45, -20, 0.5), 1, 3},
		{"long flushed", long(37, -200, 6), 0.5, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := make([]float32, len(c.src))
			sum := ExpShifted(dst, c.src, c.scale, c.m)
			want := 0.0
			for i, x := range c.src {
				v := float64(x*c.scale - c.m)
				e := math.Exp(v)
				if v < -87.33 {
					e = 0
				}
				if d := math.Abs(float64(dst[i]) - e); d > 4e-7*e {
					t.Errorf("dst[%d] = %g, want %g", i, dst[i], e)
				}
				want += e
			}
			if math.Abs(float64(sum)-want) > 1e-6*want {
				t.Errorf("sum %g, want %g", sum, want)
			}
		})
	}
}

func BenchmarkGelu(b *testing.B) {
	src := make([]float32, 1<<14)
	for i := range src {
		src[i] = float32(i%2000)/250 - 4
	}
	dst := make([]float32, len(src))
	b.SetBytes(int64(4 * len(src)))
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		Gelu(dst, src)
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}

func BenchmarkKernels(b *testing.B) {
	src := make([]float32, 1<<14)
	for i := range src {
		src[i] = float32(i%2000)/250 - 4
	}
	dst := make([]float32, len(src))
	for _, c := range []struct {
		name string
		f    func(dst, src []float32)
	}{{"Exp", Exp}, {"Sigmoid", Sigmoid}, {"SiLU", SiLU}, {"Tanh", Tanh}, {"Erf", Erf}, {"Gelu", Gelu}, {"GeluTanh", GeluTanh},
		{"ExpShifted", func(d, s []float32) { ExpShifted(d, s, 0.5, 2) }}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(4 * len(src)))
			c0 := cpuTime()
			for b.Loop() {
				c.f(dst, src)
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// long returns n values lo, lo+step, ...
func long(n int, lo, step float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = lo + float32(i)*step
	}
	return s
}

// TestLengths runs the functions with a vector form on every length up to
// 72 at every offset up to 16, so that the 16-lane loop, the 8-lane loop
// and the scalar tail see every element position (tails of 1..31 after a
// multiple of 16 or 32).
func TestLengths(t *testing.T) { forPaths(t, testLengths) }

func testLengths(t *testing.T) {
	src := make([]float32, 96)
	for i := range src {
		src[i] = float32(i%48)*0.37 - 6
	}
	src[17] = float32(math.NaN())
	src[50] = float32(math.NaN())
	for _, c := range []struct {
		name string
		f    func(dst, src []float32)
		g    func(float64) float64
	}{
		{"Exp", Exp, math.Exp}, {"Sigmoid", Sigmoid, sigmoid}, {"SiLU", SiLU, func(x float64) float64 { return x * sigmoid(x) }},
		{"Tanh", Tanh, math.Tanh}, {"Erf", Erf, math.Erf}, {"Gelu", Gelu, gelu}, {"GeluTanh", GeluTanh, geluTanh},
	} {
		for off := 0; off < 16; off++ {
			for n := 0; n+off <= 72; n++ {
				s := src[off : off+n]
				d := make([]float32, n)
				c.f(d, s)
				for i, x := range s {
					want, got := c.g(float64(x)), float64(d[i])
					if x != x {
						if got == got {
							t.Fatalf("%s(NaN) = %g (length %d, offset %d)", c.name, got, n, off)
						}
						continue
					}
					if math.Abs(got-want) > 3e-7+6e-7*math.Abs(want) {
						t.Fatalf("%s(%g) = %g, want %g (length %d, offset %d)", c.name, x, got, want, n, off)
					}
				}
			}
		}
	}
	for n := 0; n <= 72; n++ {
		s := src[:n]
		d := make([]float32, n)
		sum := ExpShifted(d, s, 2, 30)
		want := 0.0
		for i, x := range s {
			v := float64(x*2 - 30)
			e := math.Exp(v)
			if v < -87.33 {
				e = 0
			}
			if x != x {
				if d[i] == d[i] {
					t.Fatalf("ExpShifted of NaN = %g (length %d)", d[i], n)
				}
				continue
			}
			if math.Abs(float64(d[i])-e) > 4e-7*e {
				t.Fatalf("ExpShifted element %d = %g, want %g (length %d)", i, d[i], e, n)
			}
			want += e
		}
		if n <= 17 && math.Abs(sum-want) > 1e-6*want {
			t.Fatalf("ExpShifted sum %g, want %g (length %d)", sum, want, n)
		}
	}
}

func TestMaxScaleAdd(t *testing.T) {
	src := make([]float32, 48)
	add := make([]float32, 48)
	for i := range src {
		src[i] = float32((i*37)%41) - 20
		add[i] = float32(i) * 0.25
	}
	for off := 0; off < 8; off++ {
		for n := 1; n+off <= 40; n++ {
			s := src[off : off+n]
			want := s[0]
			for _, v := range s {
				want = max(want, v)
			}
			if got := Max(s); got != want {
				t.Fatalf("Max of length %d at offset %d = %g, want %g", n, off, got, want)
			}
			for _, a := range [][]float32{nil, add[off : off+n]} {
				d := make([]float32, n)
				ScaleAdd(d, s, 0.3, a)
				for i, x := range s {
					w := float64(x) * 0.3
					if a != nil {
						w += float64(a[i])
					}
					if math.Abs(float64(d[i])-w) > 1e-6*(1+math.Abs(w)) {
						t.Fatalf("ScaleAdd (add %v) element %d of length %d = %g, want %g", a != nil, i, n, d[i], w)
					}
				}
			}
		}
	}
	if got := Max([]float32{-3, float32(math.Inf(-1)), -2, -7, -9, -1.5, -8, -4, -6, -5}); got != -1.5 {
		t.Errorf("Max of negatives = %g", got)
	}
}

// BenchmarkGeluRows runs Gelu over 16 Ki elements in rows of a few lengths,
// as the fused MatMul epilogue calls it on the blocks of its GEMM.
func BenchmarkGeluRows(b *testing.B) {
	src := make([]float32, 1<<14)
	for i := range src {
		src[i] = float32(i%2000)/250 - 4
	}
	dst := make([]float32, len(src))
	for _, w := range []int{24, 64, 128, 512} {
		b.Run(fmt.Sprint(w), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				for lo := 0; lo+w <= len(src); lo += w {
					Gelu(dst[lo:lo+w], src[lo:lo+w])
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}
