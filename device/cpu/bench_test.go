package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// reportFlops reports the benchmark's speed in GFLOP/s for flops per op.
func reportFlops(b *testing.B, flops float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// naiveGemm is the triple loop the kernels are compared with (i-p-j order,
// which the Go compiler keeps in registers reasonably well).
func naiveGemm(m, n, k int, a, b, c []float32) {
	for i := 0; i < m; i++ {
		cr := c[i*n : i*n+n]
		clear(cr)
		for p := 0; p < k; p++ {
			av := a[i*k+p]
			br := b[p*n : p*n+n]
			for j, bv := range br {
				cr[j] += av * bv
			}
		}
	}
}

var gemmBenchShapes = []struct {
	name    string
	transB  bool
	m, n, k int
}{
	{"64", false, 64, 64, 64},
	{"256", false, 256, 256, 256},
	{"1024", false, 1024, 1024, 1024},
	{"gemv_1x768x768", false, 1, 768, 768},
	{"gemv_1x768x768_tB", true, 1, 768, 768},
	{"gemv_1x2048x1000", false, 1, 1000, 2048},
	{"gemv_1x2048x1000_tB", true, 1, 1000, 2048},
}

func BenchmarkSgemm(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, s := range gemmBenchShapes {
		a := randSlice(r, s.m*s.k)
		bm := randSlice(r, s.k*s.n)
		c := make([]float32, s.m*s.n)
		ldb := s.n
		if s.transB {
			ldb = s.k
		}
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		b.Run(fmt.Sprintf("%s/%s", s.name, ISA()), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Sgemm(false, s.transB, s.m, s.n, s.k, 1, a, s.k, bm, ldb, 0, c, s.n)
			}
			reportFlops(b, flops)
		})
		b.Run(fmt.Sprintf("%s/naive", s.name), func(b *testing.B) {
			if s.m*s.n*s.k > 1<<28 {
				b.Skip("too slow")
			}
			b.ReportAllocs()
			for b.Loop() {
				naiveGemm(s.m, s.n, s.k, a, bm, c)
			}
			reportFlops(b, flops)
		})
	}
}
