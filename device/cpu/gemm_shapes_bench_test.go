//go:build linux

package cpu

import (
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/fastmath"
)

// timedLoop runs f b.N times and reports the process's CPU time per call
// (cpu-us/op) and the smallest and median wall time of one call (min-us,
// p50-us): on a machine shared with other work the minimum is the call
// that found its cores free.
func timedLoop(b *testing.B, f func()) { timedLoopCold(b, nil, f) }

// timedLoopCold is timedLoop running evict (when not nil) before each call,
// outside the wall time but inside cpu-us/op.
func timedLoopCold(b *testing.B, evict func(), f func()) {
	ds := make([]time.Duration, 0, b.N)
	c0 := processCPU()
	for b.Loop() {
		if evict != nil {
			evict()
		}
		t0 := time.Now()
		f()
		ds = append(ds, time.Since(t0))
	}
	b.ReportMetric(float64(processCPU()-c0)/1e3/float64(b.N), "cpu-us/op")
	slices.Sort(ds)
	b.ReportMetric(float64(ds[0])/1e3, "min-us")
	b.ReportMetric(float64(ds[len(ds)/2])/1e3, "p50-us")
}

// forceThreads splits every call into GOMAXPROCS parts, as kiln run
// --intra-op-threads does, whether or not the other cores are busy; the
// returned function restores the automatic choice.
func forceThreads(b *testing.B) func() {
	if err := SetThreads(runtime.GOMAXPROCS(0)); err != nil {
		b.Fatal(err)
	}
	return func() { SetThreads(0) }
}

// processCPU returns the process's user and system CPU time (all threads).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// modelGemmShapes are the products where ONNX Runtime was ahead of kiln per
// node (issue 15): bert_mini's projections at 128 tokens (B a constant,
// packed once, bias and GELU in the epilogue as FusedMatMul runs them) and
// mobilenet_v2's classifier (1 x 1280 x 1000, B stored transposed: a GEMV).
var modelGemmShapes = []struct {
	name    string
	m, k, n int
	gelu    bool
}{
	{"bert-ff1-gelu", 128, 128, 512, true},
	{"bert-ff2", 128, 512, 128, false},
	{"bert-qkv", 128, 128, 384, false},
	{"bert-proj", 128, 128, 128, false},
}

// BenchmarkModelGemms times the products of modelGemmShapes as the
// operators call them (cpu.SgemmPacked with the bias + activation epilogue;
// Sgemm with a transposed B for the classifier), on Threads() goroutines:
// run it with -cpu 1 and -cpu 2. cpu-us/op is the process's CPU time per
// call (the waiting worker's polling included), steadier than the wall
// time on a loaded machine; MB/s is MFLOP/s of wall time.
//
//	go test ./device/cpu -run '^$' -bench ModelGemms -cpu 1,2
func BenchmarkModelGemms(b *testing.B) {
	for _, s := range modelGemmShapes {
		a, w, bias, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.n), make([]float32, s.m*s.n)
		for i := range a {
			a[i] = float32(i%13)/7 - 1
		}
		for i := range w {
			w[i] = float32(i%11)/50 - 0.1
		}
		for i := range bias {
			bias[i] = float32(i%7) / 10
		}
		pb := PackB(s.k, s.n, w, s.n)
		epi := func(i0, i1, j0, j1 int) {
			for r := i0; r < i1; r++ {
				row := c[r*s.n+j0 : r*s.n+j1]
				fastmath.ScaleAdd(row, row, 1, bias[j0:j1])
				if s.gelu {
					fastmath.Gelu(row, row)
				}
			}
		}
		b.Run(s.name, func(b *testing.B) {
			defer forceThreads(b)()
			b.SetBytes(int64(2 * s.m * s.n * s.k))
			timedLoop(b, func() { SgemmPacked(Blocking{}, s.m, a, s.k, pb, c, s.n, epi) })
		})
		b.Run(s.name+"/no-epilogue", func(b *testing.B) {
			defer forceThreads(b)()
			b.SetBytes(int64(2 * s.m * s.n * s.k))
			timedLoop(b, func() { SgemmPacked(Blocking{}, s.m, a, s.k, pb, c, s.n, nil) })
		})
	}
	for _, s := range []struct {
		name    string
		m, k, n int
	}{{"mnv2-classifier", 1, 1280, 1000}} {
		x, w, y := make([]float32, s.k), make([]float32, s.n*s.k), make([]float32, s.n)
		for i := range x {
			x[i] = float32(i%13)/7 - 1
		}
		for i := range w {
			w[i] = float32(i%11)/50 - 0.1
		}
		for _, cold := range []bool{false, true} {
			name := s.name + "/warm"
			var evict func()
			if cold {
				// the weights out of the caches, as after a CNN's
				// convolutions: a walk over 64 MiB
				name = s.name + "/cold"
				big := make([]float32, 16<<20)
				evict = func() {
					for i := 0; i < len(big); i += 16 {
						big[i]++
					}
				}
			}
			b.Run(name, func(b *testing.B) {
				defer forceThreads(b)()
				b.SetBytes(int64(2 * s.m * s.n * s.k))
				timedLoopCold(b, evict, func() { Sgemm(false, true, s.m, s.n, s.k, 1, x, s.k, w, s.k, 0, y, s.n) })
			})
		}
	}
}

// BenchmarkModelGemmBlockings times the products of modelGemmShapes
// (without their epilogue) with each candidate cache blocking and a few
// shallower K blocks, on one goroutine: the K block decides whether a
// kc x nr panel of B and an mr x kc panel of A fit in L1 together.
//
//	go test ./device/cpu -run '^$' -bench ModelGemmBlockings -cpu 1
func BenchmarkModelGemmBlockings(b *testing.B) {
	bls := append(Blockings(), Blocking{MC: 336, KC: 256, NC: 2048}, Blocking{MC: 336, KC: 192, NC: 2048}, Blocking{MC: 336, KC: 128, NC: 2048})
	for _, s := range modelGemmShapes {
		a, w, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.m*s.n)
		for i := range a {
			a[i] = float32(i%13)/7 - 1
		}
		for i := range w {
			w[i] = float32(i%11)/50 - 0.1
		}
		pb := PackB(s.k, s.n, w, s.n)
		for _, bl := range bls {
			b.Run(s.name+"/"+bl.String(), func(b *testing.B) {
				g := gemmJob{kern: active, m: s.m, n: s.n, k: s.k, alpha: 1, a: a, lda: s.k, b: w, ldb: s.n, c: c, ldc: s.n, blk: bl, pb: pb}
				minLoop(b, func() { g.run(0, s.m, 0, s.n) })
			})
		}
	}
}

// minLoop runs f b.N times on one locked OS thread and reports the
// smallest and the median wall time of a call (min-us, p50-us) and the
// thread's CPU time per call (cpu-us/op): on a loaded machine the minimum
// is a call that kept its core throughout.
func minLoop(b *testing.B, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ds := make([]time.Duration, 0, b.N)
	c0 := gemmThreadCPU()
	for b.Loop() {
		t0 := time.Now()
		f()
		ds = append(ds, time.Since(t0))
	}
	b.ReportMetric(float64(gemmThreadCPU()-c0)/1e3/float64(b.N), "cpu-us/op")
	slices.Sort(ds)
	b.ReportMetric(float64(ds[0])/1e3, "min-us")
	b.ReportMetric(float64(ds[len(ds)/2])/1e3, "p50-us")
}

// BenchmarkModelGemmEdge times the products of modelGemmShapes (no
// epilogue, B packed, one goroutine, thread CPU time) with the last row
// tile of 1-3 rows run as it is ("edge1") and merged with the tile before
// it into two of equal height ("split"); -count N alternates them.
//
//	go test ./device/cpu -run '^$' -bench ModelGemmEdge -cpu 1 -count 8
func BenchmarkModelGemmEdge(b *testing.B) {
	defer func(v int) { edgeMinRows = v }(edgeMinRows)
	for _, s := range modelGemmShapes {
		a, w, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.m*s.n)
		for i := range a {
			a[i] = float32(i%13)/7 - 1
		}
		for i := range w {
			w[i] = float32(i%11)/50 - 0.1
		}
		pb := PackB(s.k, s.n, w, s.n)
		for _, v := range []struct {
			name string
			min  int
		}{{"edge1", 0}, {"split", 4}} {
			b.Run(s.name+"/"+v.name, func(b *testing.B) {
				edgeMinRows = v.min
				g := gemmJob{kern: active, m: s.m, n: s.n, k: s.k, alpha: 1, a: a, lda: s.k, b: w, ldb: s.n, c: c, ldc: s.n, pb: pb}
				minLoop(b, func() { g.run(0, s.m, 0, s.n) })
			})
		}
	}
}

// BenchmarkModelGemmSplit times the products of modelGemmShapes with bias
// (SgemmPacked, split forced over GOMAXPROCS goroutines) with the rows
// shared in whole row panels ("panels": 128 rows on two goroutines as 70
// and 58) and in equal ranges ("even": 64 and 64); -count N alternates
// them. Run it at -cpu 2.
//
//	go test ./device/cpu -run '^$' -bench ModelGemmSplit -cpu 2 -count 8
func BenchmarkModelGemmSplit(b *testing.B) {
	defer func(v bool) { evenRows = v }(evenRows)
	for _, s := range modelGemmShapes {
		a, w, bias, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.n), make([]float32, s.m*s.n)
		for i := range a {
			a[i] = float32(i%13)/7 - 1
		}
		for i := range w {
			w[i] = float32(i%11)/50 - 0.1
		}
		pb := PackB(s.k, s.n, w, s.n)
		epi := func(i0, i1, j0, j1 int) {
			for r := i0; r < i1; r++ {
				row := c[r*s.n+j0 : r*s.n+j1]
				fastmath.ScaleAdd(row, row, 1, bias[j0:j1])
			}
		}
		for _, v := range []struct {
			name string
			even bool
		}{{"panels", false}, {"even", true}} {
			b.Run(s.name+"/"+v.name, func(b *testing.B) {
				evenRows = v.even
				defer forceThreads(b)()
				timedLoop(b, func() { SgemmPacked(Blocking{}, s.m, a, s.k, pb, c, s.n, epi) })
			})
		}
	}
}

// BenchmarkModelGemmShares times, on one goroutine, each goroutine's share
// of a two-way row split of bert_mini's ff2 and proj products (B packed,
// no epilogue): whole row panels (rows 0-69 and 70-127) and equal ranges
// (0-63, 64-127). On two free cores the product takes as long as its
// larger share; on a loaded machine, where the worker rarely finds a core,
// this is what can be measured of the split.
//
//	go test ./device/cpu -run '^$' -bench ModelGemmShares -cpu 1 -count 8
func BenchmarkModelGemmShares(b *testing.B) {
	for _, s := range modelGemmShapes {
		if s.n > 128 {
			continue // split by columns, in equal halves already
		}
		a, w, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.m*s.n)
		for i := range a {
			a[i] = float32(i%13)/7 - 1
		}
		for i := range w {
			w[i] = float32(i%11)/50 - 0.1
		}
		pb := PackB(s.k, s.n, w, s.n)
		g := gemmJob{kern: active, m: s.m, n: s.n, k: s.k, alpha: 1, a: a, lda: s.k, b: w, ldb: s.n, c: c, ldc: s.n, pb: pb}
		mr := active.mr
		panels := ((s.m+mr-1)/mr + 1) / 2 * mr
		for _, v := range []struct {
			name   string
			i0, i1 int
		}{{"panels-first", 0, panels}, {"panels-second", panels, s.m}, {"even-first", 0, s.m / 2}, {"even-second", s.m / 2, s.m}} {
			b.Run(s.name+"/"+v.name, func(b *testing.B) {
				minLoop(b, func() { g.run(v.i0, v.i1, 0, s.n) })
			})
		}
	}
}

// BenchmarkModelGemmBias times the products of modelGemmShapes with their
// bias (and ff1's GELU) as FusedMatMul ran them, the bias a pass of
// fastmath.ScaleAdd over each row of a block in the epilogue ("epilogue"),
// and with the bias added by the kernel as it stores C
// (SgemmPackedBias: "kernel"); -count N alternates them. Run it at -cpu 1.
//
//	go test ./device/cpu -run '^$' -bench ModelGemmBias -cpu 1 -count 8
func BenchmarkModelGemmBias(b *testing.B) {
	for _, s := range modelGemmShapes {
		a, w, bias, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.n), make([]float32, s.m*s.n)
		for i := range a {
			a[i] = float32(i%13)/7 - 1
		}
		for i := range w {
			w[i] = float32(i%11)/50 - 0.1
		}
		for i := range bias {
			bias[i] = float32(i%7) / 10
		}
		pb := PackB(s.k, s.n, w, s.n)
		epiBias := func(i0, i1, j0, j1 int) {
			for r := i0; r < i1; r++ {
				row := c[r*s.n+j0 : r*s.n+j1]
				fastmath.ScaleAdd(row, row, 1, bias[j0:j1])
				if s.gelu {
					fastmath.Gelu(row, row)
				}
			}
		}
		var epiAct func(i0, i1, j0, j1 int)
		if s.gelu {
			epiAct = func(i0, i1, j0, j1 int) {
				for r := i0; r < i1; r++ {
					row := c[r*s.n+j0 : r*s.n+j1]
					fastmath.Gelu(row, row)
				}
			}
		}
		b.Run(s.name+"/epilogue", func(b *testing.B) {
			minLoop(b, func() { SgemmPacked(Blocking{}, s.m, a, s.k, pb, c, s.n, epiBias) })
		})
		b.Run(s.name+"/kernel", func(b *testing.B) {
			minLoop(b, func() { SgemmPackedBias(Blocking{}, s.m, a, s.k, pb, bias, c, s.n, epiAct) })
		})
	}
}
