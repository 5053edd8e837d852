package parallel

import (
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestParallelFor checks that For and DynamicFor cover [0, n) with
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
					For(c.n, c.grain, fn)
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

// TestParallelForConcurrent runs For from several goroutines at
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
				For(n, 1, func(lo, hi int) {
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
	fixThreads(t, 64)
	For(2, 1, func(lo, hi int) {})
	runtime.GOMAXPROCS(6)
	var mu sync.Mutex
	seen := 0
	For(6, 1, func(lo, hi int) {
		mu.Lock()
		seen += hi - lo
		mu.Unlock()
	})
	if seen != 6 || int(pool.started.Load()) < 5 {
		t.Fatalf("covered %d of 6 with %d workers started", seen, pool.started.Load())
	}
}

// TestParallelForShrinks checks that lowering GOMAXPROCS after the pool
// grew splits later calls into fewer parts (the extra workers stay parked)
// and still covers every item once, at each size on the way down.
func TestParallelForShrinks(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	fixThreads(t, 64)
	For(8, 1, func(lo, hi int) {})
	for _, procs := range []int{8, 5, 3, 2, 1} {
		runtime.GOMAXPROCS(procs)
		for _, dynamic := range []bool{false, true} {
			hits := make([]atomic.Int32, 101)
			var calls atomic.Int32
			fn := func(lo, hi int) {
				calls.Add(1)
				for i := lo; i < hi; i++ {
					hits[i].Add(1)
				}
			}
			if dynamic {
				DynamicFor(len(hits), 3, fn)
			} else {
				For(len(hits), 1, fn)
			}
			for i := range hits {
				if h := hits[i].Load(); h != 1 {
					t.Fatalf("GOMAXPROCS %d, dynamic %v: item %d run %d times", procs, dynamic, i, h)
				}
			}
			if !dynamic && int(calls.Load()) != procs {
				t.Fatalf("GOMAXPROCS %d: %d ranges, want one per thread", procs, calls.Load())
			}
		}
	}
}

// TestJobParts runs one job's ranges on the caller alone and with workers
// that arrive at once, late or never (played by the test's goroutines, not
// the pool's), and checks that every range runs exactly once, that exactly
// one goroutine reports the last, and that each goroutine first runs its
// own part in order (the caller part 0 from range 0, the i-th worker to
// arrive part i) and after that only ranges of other parts, each taken from
// the back of a part left unfinished.
func TestJobParts(t *testing.T) {
	cases := []struct {
		name                  string
		ranges, parts, joined int
		late                  bool
	}{
		{"caller-alone", 10, 2, 0, false},
		{"two", 16, 2, 1, false},
		{"two-odd", 17, 2, 1, false},
		{"late-worker", 16, 2, 1, true},
		{"four-one-comes", 40, 4, 1, false},
		{"four", 40, 4, 3, false},
		{"more-workers-than-parts", 9, 2, 3, false},
		{"short-parts", 5, 4, 3, false},
		{"one-range-each", 3, 3, 2, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 200 {
				var mu sync.Mutex
				ran := map[int64][]int{} // per goroutine id: the ranges it ran
				hits := make([]atomic.Int32, c.ranges)
				j := &job{done: make(chan struct{}, 1)}
				j.setup(c.ranges, 1, c.parts, func(lo, hi int) {
					if hi != lo+1 {
						t.Errorf("range [%d, %d): want one item", lo, hi)
					}
					hits[lo].Add(1)
					id := goid()
					mu.Lock()
					ran[id] = append(ran[id], lo)
					mu.Unlock()
				})
				slots := map[int64]int32{}
				var lasts atomic.Int32
				var wg sync.WaitGroup
				start := make(chan struct{})
				play := func(caller bool) {
					defer wg.Done()
					<-start
					if c.late && !caller {
						for j.pending.Load() == int32(c.ranges) {
							runtime.Gosched()
						}
					}
					own := int32(0)
					if !caller {
						own = j.slot.Add(1) - 1
					}
					mu.Lock()
					slots[goid()] = own
					mu.Unlock()
					if j.workFrom(own, caller) {
						lasts.Add(1)
					}
				}
				wg.Add(c.joined + 1)
				go play(true)
				for range c.joined {
					go play(false)
				}
				close(start)
				wg.Wait()
				for i := range hits {
					if h := hits[i].Load(); h != 1 {
						t.Fatalf("range %d run %d times", i, h)
					}
				}
				if n := lasts.Load(); n != 1 {
					t.Fatalf("%d goroutines report finishing the last range", n)
				}
				for id, seq := range ran {
					own := slots[id]
					plo, phi := c.ranges, c.ranges // no part of its own
					if own < int32(c.parts) {
						plo, phi = int(own)*c.ranges/c.parts, int(own+1)*c.ranges/c.parts
					}
					k := 0
					for k < len(seq) && seq[k] >= plo && seq[k] < phi {
						if seq[k] != plo+k {
							t.Fatalf("slot %d ran %v: its part [%d, %d) out of order", own, seq, plo, phi)
						}
						k++
					}
					partOf := func(r int) int { return sort.Search(c.parts, func(q int) bool { return r < (q+1)*c.ranges/c.parts }) }
					for ; k < len(seq); k++ {
						if seq[k] >= plo && seq[k] < phi {
							t.Fatalf("slot %d ran %v: back in its own part after stealing", own, seq)
						}
						// stolen from the back: descending within a part
						if k > 0 && partOf(seq[k-1]) == partOf(seq[k]) && seq[k-1] <= seq[k] && !(seq[k-1] >= plo && seq[k-1] < phi) {
							t.Fatalf("slot %d ran %v: ranges of part %d stolen in ascending order", own, seq, partOf(seq[k]))
						}
					}
				}
			}
		})
	}
}

// TestDynamicForParts checks, through the pool, that the caller of
// DynamicFor runs the first part's ranges in order from range 0 before it
// runs any other, and that every range runs once.
func TestDynamicForParts(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	fixThreads(t, 64)
	for _, threads := range []int{2, 3} {
		runtime.GOMAXPROCS(threads)
		for range 300 {
			const n = 48
			var mu sync.Mutex
			ran := map[int64][]int{}
			DynamicFor(n, 1, func(lo, hi int) {
				id := goid()
				mu.Lock()
				ran[id] = append(ran[id], lo)
				mu.Unlock()
				var acc float32
				for i := 0; i < 200; i++ { // a little work per range
					acc += float32(i) * acc
				}
				if acc != 0 {
					t.Error("sum of zeros is not zero")
				}
			})
			// The caller takes part 0 from its front, unless the workers
			// took all of it from the back before it started (a caller
			// descheduled after waking them: seen under -race).
			caller := ran[goid()]
			partEnd := n / threads
			if len(caller) > 0 && caller[0] != 0 && caller[0] < partEnd {
				t.Fatalf("%d threads: the caller ran %v, want range 0 first", threads, caller)
			}
			for k := 1; k < len(caller) && caller[k] < partEnd; k++ {
				if caller[k] != caller[k-1]+1 {
					t.Fatalf("%d threads: the caller ran %v: its part out of order", threads, caller)
				}
			}
			total := 0
			for _, seq := range ran {
				total += len(seq)
			}
			if total != n {
				t.Fatalf("%d threads: %d ranges run, want %d", threads, total, n)
			}
		}
	}
}

// goid returns the running goroutine's id (from its stack header).
func goid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = b[len("goroutine "):]
	var id int64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + int64(c-'0')
	}
	return id
}

// parallelForGo is For as it was before the pool: a goroutine per
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
		}{{"pool", For}, {"goroutines", parallelForGo}} {
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
				For(64, 1, func(lo, hi int) {
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
			For(64, 1, staticRange)
		}
	})
}

func staticRange(lo, hi int) {
	if hi < lo {
		sinkF32 = 1
	}
}
