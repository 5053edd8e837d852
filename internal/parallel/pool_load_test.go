package parallel

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain reads GOMAXPROCS on every call: the package's tests change it
// and call For at once (TestThreadsSeesGOMAXPROCS checks the cache).
func TestMain(m *testing.M) {
	ReadGOMAXPROCSEachCall()
	os.Exit(m.Run())
}

// TestThreadsSeesGOMAXPROCS: Threads caches GOMAXPROCS (reading it takes
// the Go scheduler's lock) and sees a change within procsEvery, or at once
// after SetThreads.
func TestThreadsSeesGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	procsDirect = false
	defer func() { procsDirect = true }()
	if err := SetThreads(0); err != nil {
		t.Fatal(err)
	}
	if got := Threads(); got != 3 {
		t.Fatalf("Threads() = %d with GOMAXPROCS 3", got)
	}
	runtime.GOMAXPROCS(2)
	deadline := time.Now().Add(10 * procsEvery)
	for Threads() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("Threads() = %d %v after GOMAXPROCS became 2", Threads(), 10*procsEvery)
		}
		time.Sleep(time.Millisecond)
	}
	runtime.GOMAXPROCS(4)
	if err := SetThreads(0); err != nil {
		t.Fatal(err)
	}
	if got := Threads(); got != 4 {
		t.Fatalf("Threads() = %d right after SetThreads with GOMAXPROCS 4", got)
	}
}

// fixThreads fixes the thread count at n for the test (SetThreads), so
// that calls split whatever the machine's load, and restores automatic
// after it.
func fixThreads(t *testing.T, n int) {
	t.Helper()
	if err := SetThreads(n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = SetThreads(0) })
}

// markBusyFor marks the pool busy for d from now (as a worker whose polling
// was descheduled does) and clears the mark after the test. It first waits
// until no worker polls (they park spinFor after their last job), so that
// the mark alone decides.
func markBusyFor(t *testing.T, d time.Duration) {
	t.Helper()
	time.Sleep(10 * spinFor)
	for clock()-load.polled.Load() < int64(freshPoll) {
		time.Sleep(spinFor)
	}
	load.busyUntil.Store(clock() + int64(d))
	t.Cleanup(func() { load.busyUntil.Store(0) })
}

// calls runs For or DynamicFor over n items and returns the
// ranges fn was called with, checking that they cover [0, n) once.
func calls(t *testing.T, dynamic bool, n, grain int) [][2]int {
	t.Helper()
	var mu sync.Mutex
	var got [][2]int
	hits := make([]atomic.Int32, n)
	fn := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			hits[i].Add(1)
		}
		mu.Lock()
		got = append(got, [2]int{lo, hi})
		mu.Unlock()
	}
	if dynamic {
		DynamicFor(n, grain, fn)
	} else {
		For(n, grain, fn)
	}
	for i := range hits {
		if h := hits[i].Load(); h != 1 {
			t.Fatalf("item %d run %d times", i, h)
		}
	}
	return got
}

// TestSetThreads checks the ranges a call is split into with each thread
// count SetThreads accepts while a server has more requests in flight than
// threads (a fixed count splits regardless, automatic runs inline), and
// that it refuses negative counts.
func TestSetThreads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for range 8 {
		RequestStarted()
		defer RequestDone()
	}
	cases := []struct {
		set     int
		dynamic bool
		threads int // Threads() after SetThreads
		ranges  int // ranges of a call over 100 items, grain or chunk 10
		err     string
	}{
		{set: 1, threads: 1, ranges: 1},
		{set: 1, dynamic: true, threads: 1, ranges: 1},
		{set: 2, threads: 2, ranges: 2},
		{set: 3, threads: 3, ranges: 3},
		{set: 3, dynamic: true, threads: 3, ranges: 10},
		{set: 8, threads: 4, ranges: 4}, // at most GOMAXPROCS
		{set: 0, threads: 4, ranges: 1}, // automatic: 8 requests in flight, so inline
		{set: 0, dynamic: true, threads: 4, ranges: 1},
		{set: -1, threads: 4, ranges: 1, err: "-1 threads"},
		{set: 1 << 20, threads: 4, ranges: 1, err: "want 0 (automatic) or a positive count"},
	}
	for _, c := range cases {
		err := SetThreads(c.set)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("SetThreads(%d): error %v, want one saying %q", c.set, err, c.err)
			}
		} else if err != nil {
			t.Fatalf("SetThreads(%d): %v", c.set, err)
		}
		if got := Threads(); got != c.threads {
			t.Errorf("SetThreads(%d): Threads() = %d, want %d", c.set, got, c.threads)
		}
		for range 20 {
			if got := calls(t, c.dynamic, 100, 10); len(got) != c.ranges {
				t.Fatalf("SetThreads(%d), dynamic %v: ranges %v, want %d", c.set, c.dynamic, got, c.ranges)
			}
		}
		_ = SetThreads(0)
	}
}

// TestParallelForBusy checks that while the pool is marked busy every call
// runs on its caller as one range, from many goroutines at once and nested
// in each other, without waking a worker; and that the first call after
// the mark ends splits again.
func TestParallelForBusy(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	markBusyFor(t, time.Minute)
	var wg sync.WaitGroup
	var total, split atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				n := 8 + (g*31+i)%40
				id := goid()
				For(n, 1, func(lo, hi int) {
					if lo != 0 || hi != n || goid() != id {
						split.Add(1)
					}
					DynamicFor(hi-lo, 2, func(a, b int) {
						if a != 0 || b != hi-lo || goid() != id {
							split.Add(1)
						}
						total.Add(int64(b - a))
					})
				})
				total.Add(-int64(n))
			}
		}()
	}
	wg.Wait()
	if v := total.Load(); v != 0 {
		t.Fatalf("items run minus items asked = %d", v)
	}
	if v := split.Load(); v != 0 {
		t.Fatalf("%d calls split or ran off their caller while the pool was busy", v)
	}
	// Once the mark is cleared a call splits; a worker woken by an
	// earlier call and descheduled on a slow machine (qemu in CI) may mark
	// the pool busy again at any moment, so each kind of call gets ten
	// tries, the mark cleared before each, and must split at least once.
	for _, dynamic := range []bool{false, true} {
		want := map[bool]int{false: 4, true: 10}[dynamic]
		var got [][2]int
		for range 10 {
			load.busyUntil.Store(0)
			if got = calls(t, dynamic, 100, 10); len(got) == want {
				break
			}
			if len(got) != 1 {
				t.Fatalf("dynamic %v, after the busy mark: ranges %v, want %d or one inline", dynamic, got, want)
			}
		}
		if len(got) != want {
			t.Fatalf("dynamic %v, after the busy mark: ranges %v in ten tries, want a split", dynamic, got)
		}
	}
}

// TestPoolFindsCoresBusy runs For from one goroutine while other
// goroutines keep every core busy, as a server's requests do: the pool's
// worker finds its core taken and marks the pool busy, so that calls run
// inline; once the load stops and the mark has expired, calls split
// again, and a worker polling on a free core keeps them split.
func TestPoolFindsCoresBusy(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	_ = SetThreads(0)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				spinWork(50 * time.Microsecond)
				runtime.Gosched()
			}
		}()
	}
	s := make([]float32, 1<<14)
	work := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			s[i] += 1
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	inline := 0
	for time.Now().Before(deadline) && inline < 100 {
		if len(calls(t, false, 64, 1)) == 1 {
			inline++
		}
		For(len(s), 1024, work)
	}
	stop.Store(true)
	wg.Wait()
	if inline < 100 {
		t.Fatalf("under load only %d calls ran inline in 10s", inline)
	}
	// Idle again: within busyHold plus a margin a call splits, and then
	// back-to-back calls split (the worker polls between them).
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && len(calls(t, false, 64, 1)) == 1 {
		time.Sleep(busyHold / 4)
	}
	if time.Now().After(deadline) {
		t.Fatal("calls still run inline 10s after the load stopped")
	}
}

// spinWork keeps the goroutine's core busy for about d.
func spinWork(d time.Duration) {
	start := time.Now()
	x := 1.0
	for time.Since(start) < d {
		for i := 0; i < 100; i++ {
			x = x*1.0000001 + 1e-9
		}
	}
	if x == 0 {
		sinkF32 = float32(x)
	}
}

// TestParallelForRequests checks that calls run on their callers while a
// server has at least as many requests in flight as threads
// (RequestStarted), split again when they are answered (RequestDone), and
// split regardless with a thread count fixed by SetThreads.
func TestParallelForRequests(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	load.busyUntil.Store(0)
	cases := []struct {
		requests, fixed int
		ranges          int // of a call over 100 items, grain 10
	}{
		{0, 0, 4},
		{3, 0, 4},
		{4, 0, 1},
		{9, 0, 1},
		{9, 2, 2},
		{9, 1, 1},
	}
	for _, c := range cases {
		for range c.requests {
			RequestStarted()
		}
		if err := SetThreads(c.fixed); err != nil {
			t.Fatal(err)
		}
		// Inline calls are decided by the count alone; a split in
		// automatic mode also needs the pool not marked busy, which a
		// worker descheduled on the test machine may do at any time: one
		// split call in ten is asked for.
		splits := 0
		for range 10 {
			load.busyUntil.Store(0)
			got := calls(t, false, 100, 10)
			switch {
			case len(got) == c.ranges && c.ranges > 1:
				splits++
			case len(got) != c.ranges && (c.ranges == 1 || c.fixed > 0 || len(got) != 1):
				t.Errorf("%d requests, threads %d: ranges %v, want %d", c.requests, c.fixed, got, c.ranges)
			}
		}
		if c.ranges > 1 && splits == 0 {
			t.Errorf("%d requests, threads %d: no call of 10 split", c.requests, c.fixed)
		}
		_ = SetThreads(0)
		for range c.requests {
			RequestDone()
		}
	}
	if n := requests.n.Load(); n != 0 {
		t.Fatalf("%d requests left counted", n)
	}
}
