package cpu

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestParallelFor checks that ParallelFor and DynamicFor cover [0, n) with
// disjoint ranges, respect grain and chunk, and run concurrently from many
// callers and nested inside each other.
func TestParallelFor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	cases := []struct {
		name     string
		n, grain int
		dynamic  bool
	}{
		{"empty", 0, 1, false},
		{"negative", -3, 1, false},
		{"one", 1, 1, false},
		{"inline-by-grain", 10, 100, false},
		{"zero-grain", 7, 0, false},
		{"split", 1000, 1, false},
		{"split-grain", 1000, 300, false},
		{"odd", 17, 4, false},
		{"dynamic-one", 1, 5, true},
		{"dynamic", 1000, 7, true},
		{"dynamic-zero-chunk", 9, 0, true},
		{"dynamic-exact", 64, 16, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 50 {
				hits := make([]atomic.Int32, max(c.n, 0))
				var calls atomic.Int32
				fn := func(lo, hi int) {
					calls.Add(1)
					if lo < 0 || hi > c.n || lo >= hi {
						t.Errorf("bad range [%d, %d) of %d", lo, hi, c.n)
						return
					}
					if c.dynamic && hi-lo != max(c.grain, 1) && hi != c.n {
						t.Errorf("range [%d, %d) is not a chunk of %d", lo, hi, c.grain)
					}
					for i := lo; i < hi; i++ {
						hits[i].Add(1)
					}
				}
				if c.dynamic {
					DynamicFor(c.n, c.grain, fn)
				} else {
					ParallelFor(c.n, c.grain, fn)
				}
				for i := range hits {
					if h := hits[i].Load(); h != 1 {
						t.Fatalf("item %d run %d times", i, h)
					}
				}
				if g := max(c.grain, 1); !c.dynamic && c.n > 0 && int(calls.Load()) > min(Threads(), (c.n+g-1)/g) {
					t.Fatalf("%d calls with %d threads and grain %d", calls.Load(), Threads(), c.grain)
				}
			}
		})
	}
}

// TestParallelForConcurrent runs ParallelFor from several goroutines at
// once, each call nesting another, as concurrent execution contexts and
// kernels that split their work twice do.
func TestParallelForConcurrent(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	var wg sync.WaitGroup
	var total atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				n := 1 + (g*31+i)%40
				ParallelFor(n, 1, func(lo, hi int) {
					DynamicFor(hi-lo, 2, func(a, b int) { total.Add(int64(b - a)) })
				})
				total.Add(-int64(n))
			}
		}()
	}
	wg.Wait()
	if v := total.Load(); v != 0 {
		t.Fatalf("items run minus items asked = %d", v)
	}
}

// TestParallelForGrows checks that raising GOMAXPROCS after the pool
// started gives later calls more workers.
func TestParallelForGrows(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	ParallelFor(2, 1, func(lo, hi int) {})
	runtime.GOMAXPROCS(6)
	var mu sync.Mutex
	seen := 0
	ParallelFor(6, 1, func(lo, hi int) {
		mu.Lock()
		seen += hi - lo
		mu.Unlock()
	})
	if seen != 6 || int(pool.started.Load()) < 5 {
		t.Fatalf("covered %d of 6 with %d workers started", seen, pool.started.Load())
	}
}

// parallelForGo is ParallelFor as it was before the pool: a goroutine per
// range per call (kept for BenchmarkParallelFor's comparison).
func parallelForGo(n, grain int, fn func(lo, hi int)) {
	workers := min(Threads(), (n+grain-1)/grain)
	if workers <= 1 {
		fn(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := chunk; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	fn(0, min(chunk, n))
	wg.Wait()
}

var sinkF32 float32

// BenchmarkParallelFor times a call that splits a small amount of work
// (work= floats summed per item, 64 items) with the pool and with a
// goroutine per range, and reports allocs/op: the pool's own is 0, the
// one left is the closure that captures s.
func BenchmarkParallelFor(b *testing.B) {
	s := make([]float32, 64*4096)
	for _, work := range []int{16, 4096} {
		for _, impl := range []struct {
			name string
			f    func(int, int, func(int, int))
		}{{"pool", ParallelFor}, {"goroutines", parallelForGo}} {
			b.Run(fmt.Sprintf("work=%d/%s", work, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					impl.f(64, 1, func(lo, hi int) {
						var acc float32
						for _, v := range s[lo*work : hi*work] {
							acc += v
						}
						if acc != 0 {
							sinkF32 = acc
						}
					})
				}
			})
		}
	}
	// A layer's worth of work (about 20 us) with and without the
	// polling of idle workers and waiting callers.
	for _, spin := range []time.Duration{spinFor, 0} {
		b.Run(fmt.Sprintf("work=256/spin=%v", spin), func(b *testing.B) {
			defer func(d time.Duration) { spinFor = d }(spinFor)
			spinFor = spin
			b.ReportAllocs()
			for b.Loop() {
				ParallelFor(64, 1, func(lo, hi int) {
					var acc float32
					for _, v := range s[lo*256 : hi*256] {
						acc += v * v
					}
					if acc != 0 {
						sinkF32 = acc
					}
				})
				time.Sleep(0)
			}
		})
	}
	b.Run("static-fn", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ParallelFor(64, 1, staticRange)
		}
	})
}

func staticRange(lo, hi int) {
	if hi < lo {
		sinkF32 = 1
	}
}
