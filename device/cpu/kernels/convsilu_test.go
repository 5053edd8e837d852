package kernels

import (
	"fmt"
	"math"

	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/internal/fastmath"
)

// TestConvSiLU compares convSiLU (AVX-512 where the CPU has it) with
// x/(1+e**-x) in float64 on lengths around the vector width, in place and
// not, and on the edge values: zeros, large magnitudes, infinities, NaN.
func TestConvSiLU(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	edges := []float32{0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 20, -20, 87, -87, 88.5, -88.5, 100, -100,
		1e30, float32(math.Inf(1)), float32(math.NaN())}
	for _, n := range []int{1, 7, 15, 16, 17, 31, 32, 33, 100, 1000} {
		for _, inPlace := range []bool{false, true} {
			src := make([]float32, n)
			for i := range src {
				src[i] = float32(r.NormFloat64() * 8)
				if i%5 == 3 {
					src[i] = edges[(i/5)%len(edges)]
				}
			}
			orig := append([]float32(nil), src...)
			dst := make([]float32, n+1)
			dst[n] = 42 // must stay
			if inPlace {
				dst = src
			}
			convSiLU(dst[:n], src)
			if !inPlace && dst[n] != 42 {
				t.Fatalf("n=%d: wrote past the end", n)
			}
			for i, x := range orig {
				got := float64(dst[i])
				xf := float64(x)
				want := xf / (1 + math.Exp(-xf))
				switch {
				case math.IsNaN(xf):
					if !math.IsNaN(got) {
						t.Fatalf("n=%d: SiLU(NaN) = %v", n, got)
					}
					continue
				case math.IsInf(xf, 1):
					want = xf
				}
				if d := math.Abs(got - want); math.IsNaN(got) || d > 1e-6*math.Abs(want)+1e-30 && got != want {
					t.Fatalf("n=%d inPlace=%v: SiLU(%v) = %v, want %v", n, inPlace, x, got, want)
				}
			}
		}
	}
}

// BenchmarkConvSiLU times convSiLU and internal/fastmath's SiLU (AVX2) on
// a yolo_tiny sized output (32 x 80 x 80) and on 4096 floats (in L1).
func BenchmarkConvSiLU(b *testing.B) {
	for _, n := range []int{32 * 80 * 80, 4096} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) { benchSiLU(b, n) })
	}
}

func benchSiLU(b *testing.B, n int) {
	y := make([]float32, n)
	for i := range y {
		y[i] = float32(i%200)/10 - 10
	}
	for _, f := range []struct {
		name string
		fn   func(dst, src []float32)
	}{{"conv", convSiLU}, {"fastmath", fastmath.SiLU}} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(4 * len(y)))
			// into another buffer: SiLU applied over and over in place
			// takes the negative inputs towards zero, into denormals
			dst := make([]float32, len(y))
			for b.Loop() {
				f.fn(dst, y)
			}
		})
	}
}
