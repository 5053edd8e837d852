//go:build linux

package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// gemmThreadCPU returns the CPU time the calling OS thread has used.
func gemmThreadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1, &ru); err != nil { // RUSAGE_THREAD
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuLoop runs f b.N times on one locked OS thread and reports flops per
// op per second of that thread's CPU time ("GFLOP/cpu-s"): unlike wall
// time, it does not count the time the thread waits for a core, so it
// stays put on a loaded machine. Only for single-goroutine work.
func cpuLoop(b *testing.B, flops float64, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0 := gemmThreadCPU()
	for b.Loop() {
		f()
	}
	if d := gemmThreadCPU() - t0; d > 0 {
		b.ReportMetric(flops*float64(b.N)/d.Seconds()/1e9, "GFLOP/cpu-s")
	}
}

// bigGemmShapes are the products of the two large benchmark models at batch
// 1: BERT-base's projections at 128 tokens (B a constant, packed once) and
// resnet50's 1x1 convolutions as GEMMs (C[Cout, HW] = W[Cout, Cin] x
// X[Cin, HW]: A the weights, B the activations, not packed in advance).
var bigGemmShapes = []struct {
	name    string
	m, n, k int
	packed  bool
}{
	{"bert_qkv_128x2304x768", 128, 2304, 768, true},
	{"bert_proj_128x768x768", 128, 768, 768, true},
	{"bert_ff1_128x3072x768", 128, 3072, 768, true},
	{"bert_ff2_128x768x3072", 128, 768, 3072, true},
	{"r50_1x1_64x3136x256", 64, 3136, 256, false},
	{"r50_1x1_256x3136x64", 256, 3136, 64, false},
	{"r50_1x1_128x784x512", 128, 784, 512, false},
	{"r50_1x1_512x784x128", 512, 784, 128, false},
	{"r50_1x1_256x196x1024", 256, 196, 1024, false},
	{"r50_1x1_1024x196x256", 1024, 196, 256, false},
	{"r50_1x1_512x49x2048", 512, 49, 2048, false},
	{"r50_1x1_2048x49x512", 2048, 49, 512, false},
}

// BenchmarkGemmBig times the packed GEMM on bigGemmShapes with the kernel
// in use, for each blocking of Blockings(), on one goroutine (threads=1:
// GFLOP/cpu-s against BenchmarkGemmTile/peak) and on Threads() (wall time).
// GFLOP/s counts a multiply-add as two.
func BenchmarkGemmBig(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, s := range bigGemmShapes {
		a := randSlice(r, s.m*s.k)
		bm := randSlice(r, s.k*s.n)
		c := make([]float32, s.m*s.n)
		var pb *PackedB
		if s.packed {
			pb = PackB(s.k, s.n, bm, s.n)
		}
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, bl := range Blockings() {
			b.Run(fmt.Sprintf("%s/%s/threads=1", s.name, bl), func(b *testing.B) {
				b.ReportAllocs()
				cpuLoop(b, flops, func() {
					if pb != nil {
						g := &gemmJob{kern: active, m: s.m, n: s.n, k: s.k, alpha: 1, a: a, lda: s.k, b: bm, ldb: s.n, c: c, ldc: s.n, blk: bl, pb: pb}
						g.run(0, s.m, 0, s.n)
						return
					}
					sgemmBlocked(bl, false, false, s.m, s.n, s.k, 1, a, s.k, bm, s.n, 0, c, s.n, 1)
				})
			})
			if Threads() == 1 {
				continue
			}
			b.Run(fmt.Sprintf("%s/%s/threads=%d", s.name, bl, Threads()), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if pb != nil {
						SgemmPacked(bl, s.m, a, s.k, pb, c, s.n, nil)
						continue
					}
					sgemmBlocked(bl, false, false, s.m, s.n, s.k, 1, a, s.k, bm, s.n, 0, c, s.n, Threads())
				}
				reportFlops(b, flops)
			})
		}
	}
}

// BenchmarkGemmTile times the register tile alone on operands that stay in
// L1 (A mr x k packed, B k x nr), in GFLOP/cpu-s: the micro-kernel's own
// ceiling; "peak" is fmaPeak on the same thread, the denominator.
func BenchmarkGemmTile(b *testing.B) {
	r := rand.New(rand.NewPCG(6, 6))
	if fmaPeak(1) {
		b.Run("peak", func(b *testing.B) {
			cpuLoop(b, 1024*384, func() { fmaPeak(1024) })
		})
	}
	kern := active
	for _, k := range []int{64, 128, 256, 384} {
		a := randSlice(r, kern.mr*k)
		bm := randSlice(r, k*kern.nr)
		c := make([]float32, kern.mr*kern.nr)
		b.Run(fmt.Sprintf("%s/k=%d", kern.name, k), func(b *testing.B) {
			cpuLoop(b, 64*2*float64(kern.mr*kern.nr*k), func() {
				for range 64 {
					kern.gemm(k, &a[0], k, &bm[0], kern.nr, &c[0], kern.nr, 1, 1)
				}
			})
		})
	}
}

// BenchmarkGemmCold runs bigGemmShapes with the constant operand (BERT's
// packed B, a convolution's weights in A) cycled through copies that
// together exceed the last-level cache, as a model's layers read their
// weights once per inference ("cold"), against one copy read again and
// again ("warm"); on
// Threads() goroutines and, in GFLOP/cpu-s, on one.
func BenchmarkGemmCold(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, s := range bigGemmShapes {
		bm := randSlice(r, s.k*s.n)
		a := randSlice(r, s.m*s.k)
		c := make([]float32, s.m*s.n)
		size := s.m * s.k
		if s.packed {
			size = s.k * s.n
		}
		copies := max(2, (256<<20)/(4*size))
		pbs := make([]*PackedB, copies)
		as := make([][]float32, copies)
		for i := range copies {
			if s.packed {
				pbs[i] = PackB(s.k, s.n, bm, s.n) // same values, separate copies
			} else {
				as[i] = append([]float32(nil), a...)
			}
		}
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, mode := range []string{"warm", "cold"} {
			i := 0
			// run computes the product on nt goroutines with the next
			// copy of the constant operand.
			run := func(nt int) {
				j := i % copies
				if mode == "warm" {
					j = 0
				}
				i++
				switch {
				case s.packed && nt == 1:
					g := &gemmJob{kern: active, m: s.m, n: s.n, k: s.k, alpha: 1, a: a, lda: s.k, b: bm, ldb: s.n, c: c, ldc: s.n, pb: pbs[j]}
					g.run(0, s.m, 0, s.n)
				case s.packed:
					SgemmPacked(Blocking{}, s.m, a, s.k, pbs[j], c, s.n, nil)
				default:
					sgemm(false, false, s.m, s.n, s.k, 1, as[j], s.k, bm, s.n, 0, c, s.n, nt)
				}
			}
			b.Run(fmt.Sprintf("%s/%s/threads=1", s.name, mode), func(b *testing.B) {
				cpuLoop(b, flops, func() { run(1) })
			})
			b.Run(fmt.Sprintf("%s/%s/threads=%d", s.name, mode, Threads()), func(b *testing.B) {
				for b.Loop() {
					run(Threads())
				}
				reportFlops(b, flops)
			})
		}
	}
}
