package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
)

// BenchmarkDirectTileL1Threads runs BenchmarkDirectTileL1's 48-wide tile
// (K = 576 taps, operands in L1, each thread its own) on one thread and on
// two at once: whether the direct kernel's throughput per core holds when
// both cores run it (NOTES.md section 32). ns/op is per tile per thread.
//
//	go test ./device/cpu/kernels -run '^$' -bench DirectTileL1Threads -benchtime 100000x
func BenchmarkDirectTileL1Threads(b *testing.B) {
	const k = 576
	type ops struct {
		src, a, out []float32
		offs        []int32
	}
	mk := func(seed uint64) *ops {
		r := rand.New(rand.NewPCG(1, seed))
		o := &ops{src: make([]float32, 256), a: make([]float32, k*directMR), out: make([]float32, directMR*64), offs: make([]int32, k+pcTaps)}
		for i := range o.src {
			o.src[i] = r.Float32()
		}
		for i := range o.a {
			o.a[i] = r.Float32()
		}
		for q := range k {
			o.offs[q] = int32(q % 16)
		}
		return o
	}
	per := []*ops{mk(1), mk(2)}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("t%d", threads), func(b *testing.B) {
			if err := cpu.SetThreads(threads); err != nil {
				b.Fatal(err)
			}
			defer cpu.SetThreads(0)
			const batch = 64
			for b.Loop() {
				cpu.ParallelFor(threads, 1, func(lo, hi int) {
					var bias [directMR]float32
					for t := lo; t < hi; t++ {
						o := per[t]
						for range batch {
							convDirectTileK(pfNone, k, o.a, o.src, o.offs, 0, o.out, 64, &bias[0], 0, 1, true, 48, directMR, nil)
						}
					}
				})
			}
			b.ReportMetric(2*float64(k*directMR*48)*batch*float64(threads)/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "GFLOP/s")
		})
	}
}

// BenchmarkCopyL2Threads copies a private 192 KiB buffer (L2-resident) 16
// times per call on one thread and on two at once: whether a core's L2
// bandwidth holds when the other core streams too (NOTES.md section 32).
//
//	go test ./device/cpu/kernels -run '^$' -bench CopyL2Threads -benchtime 20000x
func BenchmarkCopyL2Threads(b *testing.B) {
	const n = 48 << 10 // floats per buffer (192 KiB): src and dst together 384 KiB, in L2, not L1
	bufs := [2][2][]float32{}
	for t := range bufs {
		bufs[t][0], bufs[t][1] = make([]float32, n), make([]float32, n)
	}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("t%d", threads), func(b *testing.B) {
			if err := cpu.SetThreads(threads); err != nil {
				b.Fatal(err)
			}
			defer cpu.SetThreads(0)
			for b.Loop() {
				cpu.ParallelFor(threads, 1, func(lo, hi int) {
					for t := lo; t < hi; t++ {
						for range 16 {
							copy(bufs[t][1], bufs[t][0])
						}
					}
				})
			}
			b.ReportMetric(float64(threads*16*n*4*2)/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "GB/s")
		})
	}
}
