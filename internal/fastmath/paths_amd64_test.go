//go:build amd64 && !purego

package fastmath

import (
	"math"
	"os"
	"testing"

	"golang.org/x/sys/cpu"
)

// forPaths runs f once per vector path this machine has: the AVX-512 loops
// (with the AVX2 loop and the scalar code for what is left) and the AVX2
// loops alone.
func forPaths(t *testing.T, f func(t *testing.T)) {
	defer func(v bool) { useAVX512 = v }(useAVX512)
	for _, p := range []struct {
		name string
		on   bool
	}{{"avx512", true}, {"avx2", false}} {
		if p.on && !(useAVX2 && cpu.X86.HasAVX512F) {
			t.Logf("%s: not on this machine", p.name)
			continue
		}
		useAVX512 = p.on
		t.Run(p.name, f)
	}
}

// TestPathsAgree checks that the 16-lane loops give, element for element,
// the bits of the 8-lane loops (the same operations lane by lane), special
// values included.
func TestPathsAgree(t *testing.T) {
	if !(useAVX2 && cpu.X86.HasAVX512F) {
		t.Skip("no AVX-512F")
	}
	defer func(v bool) { useAVX512 = v }(useAVX512)
	src := long(1024+16, -40, 0.077)
	copy(src, []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e30, -1e30, 0, float32(math.Copysign(0, -1)), 1e-40, -1e-40, 88.5, -88.5, 200, -200})
	for _, c := range []struct {
		name string
		f    func(dst, src []float32)
	}{{"Exp", Exp}, {"Sigmoid", Sigmoid}, {"SiLU", SiLU}, {"Tanh", Tanh}, {"Erf", Erf}, {"Gelu", Gelu}, {"GeluTanh", GeluTanh},
		{"ExpShifted", func(d, s []float32) { ExpShifted(d, s, 0.5, 1) }}} {
		want, got := make([]float32, len(src)), make([]float32, len(src))
		useAVX512 = false
		c.f(want, src)
		useAVX512 = true
		c.f(got, src)
		for i := range src {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
				t.Errorf("%s(%g): 16 lanes %g, 8 lanes %g", c.name, src[i], got[i], want[i])
			}
		}
	}
}

// FASTMATH_AVX512=0 turns the 16-lane loops off for a whole test binary run
// (A/B timings of the benchmarks in one binary).
func init() {
	if os.Getenv("FASTMATH_AVX512") == "0" {
		useAVX512 = false
	}
}
