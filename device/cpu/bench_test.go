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

// BenchmarkSgemmOneThread is Sgemm on one goroutine: kernel efficiency
// against BenchmarkPeak/threads=1, whatever else the machine runs.
func BenchmarkSgemmOneThread(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{256, 1024} {
		a, bm, c := randSlice(r, n*n), randSlice(r, n*n), make([]float32, n*n)
		benchKernels(b, fmt.Sprint(n), func(b *testing.B) {
			if active == genericKernel && n > 256 {
				b.Skip("too slow")
			}
			b.ReportAllocs()
			for b.Loop() {
				sgemm(false, false, n, n, n, 1, a, n, bm, n, 0, c, n, 1)
			}
			reportFlops(b, 2*float64(n)*float64(n)*float64(n))
		})
	}
}

// BenchmarkPeak measures the FMA throughput ceiling (AVX-512, 12
// independent accumulators) on one goroutine and on Threads(): the
// denominator of "percent of peak".
func BenchmarkPeak(b *testing.B) {
	const iters = 1 << 16
	if !fmaPeak(1) {
		b.Skip("no AVX-512")
	}
	for _, threads := range []int{1, Threads()} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			for b.Loop() {
				ParallelFor(threads, 1, func(lo, hi int) {
					for range hi - lo {
						fmaPeak(iters)
					}
				})
			}
			reportFlops(b, float64(threads)*iters*384)
		})
	}
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

// benchKernels runs f as name/KERNEL for each kernel this CPU has.
func benchKernels(b *testing.B, name string, f func(b *testing.B)) {
	saved := active
	defer func() { active = saved }()
	for _, k := range kernels() {
		active = k
		b.Run(name+"/"+k.name, f)
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
		benchKernels(b, s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Sgemm(false, s.transB, s.m, s.n, s.k, 1, a, s.k, bm, ldb, 0, c, s.n)
			}
			reportFlops(b, flops)
		})
		b.Run(fmt.Sprintf("%s/naive", s.name), func(b *testing.B) {
			if s.m*s.n*s.k > 1<<30 {
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

// naiveConv2D is the direct 7-loop convolution the kernels are compared
// with (bounds tests hoisted out of the innermost loop).
func naiveConv2D(p Conv2DParams, x, w, y []float32) {
	oh, ow := p.OutH(), p.OutW()
	cg, mg := p.C/p.Group, p.M/p.Group
	for n := 0; n < p.N; n++ {
		for m := 0; m < p.M; m++ {
			g := m / mg
			for yo := 0; yo < oh; yo++ {
				for xo := 0; xo < ow; xo++ {
					var s float32
					for c := 0; c < cg; c++ {
						for kh := 0; kh < p.KH; kh++ {
							ih := yo*p.StrideH - p.PadTop + kh*p.DilH
							if ih < 0 || ih >= p.H {
								continue
							}
							xr := x[((n*p.C+g*cg+c)*p.H+ih)*p.W:]
							wr := w[((m*cg+c)*p.KH+kh)*p.KW:]
							for kw := 0; kw < p.KW; kw++ {
								iw := xo*p.StrideW - p.PadLeft + kw*p.DilW
								if iw >= 0 && iw < p.W {
									s += xr[iw] * wr[kw]
								}
							}
						}
					}
					y[((n*p.M+m)*oh+yo)*ow+xo] = s
				}
			}
		}
	}
}

var convBenchCases = []struct {
	name string
	p    Conv2DParams
}{
	{"resnet50_3x3_64x56x56", conv(1, 64, 56, 56, 64, 3, 1, 1, 1, 1)},
	{"resnet50_1x1_256x56x56_to64", conv(1, 256, 56, 56, 64, 1, 1, 1, 1, 0)},
	{"resnet50_conv1_7x7s2", conv(1, 3, 224, 224, 64, 7, 1, 2, 1, 3)},
	{"resnet50_3x3_512x7x7", conv(1, 512, 7, 7, 512, 3, 1, 1, 1, 1)},
	{"mobilenetv2_dw3x3_144x56x56", conv(1, 144, 56, 56, 144, 3, 144, 1, 1, 1)},
	{"mobilenetv2_dw3x3s2_144x56x56", conv(1, 144, 56, 56, 144, 3, 144, 2, 1, 1)},
	{"resnet50_3x3_64x56x56_batch8", conv(8, 64, 56, 56, 64, 3, 1, 1, 1, 1)},
}

func BenchmarkConv2D(b *testing.B) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, bc := range convBenchCases {
		p := bc.p
		x := randSlice(r, p.N*p.C*p.H*p.W)
		w := randSlice(r, p.M*p.C/p.Group*p.KH*p.KW)
		bias := randSlice(r, p.M)
		y := make([]float32, p.N*p.M*p.OutH()*p.OutW())
		flops := 2 * float64(p.N*p.M*p.OutH()*p.OutW()) * float64(p.C/p.Group*p.KH*p.KW)
		benchKernels(b, bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Conv2D(p, x, w, bias, y)
			}
			reportFlops(b, flops)
		})
		b.Run(fmt.Sprintf("%s/naive", bc.name), func(b *testing.B) {
			if p.N > 1 {
				b.Skip("too slow")
			}
			b.ReportAllocs()
			for b.Loop() {
				naiveConv2D(p, x, w, y)
			}
			reportFlops(b, flops)
		})
	}
}
