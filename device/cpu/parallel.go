package cpu

import (
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ParallelFor calls fn on disjoint ranges [lo, hi) covering [0, n): as many
// equal ranges as Threads(), but no more than n/grain rounded up (so a
// range is about grain long or longer). It returns when every call has
// returned. Small n runs inline on the caller's goroutine.
//
// The ranges are run by the caller and by the workers of a pool that lives
// as long as the process (Threads()-1 goroutines, polling for a while and
// then parked between calls): each call wakes at most one worker per range
// beyond the caller's. The caller runs the first range, the first worker
// to arrive the second, and so on; whoever has finished takes a range no
// one has started, so the caller never waits for a worker that has not
// started (on a loaded machine it runs every range itself). ParallelFor
// allocates nothing itself; fn, if it is a closure that escapes, is the
// caller's allocation. It may be called from many goroutines at once and
// from within fn.
//
// With minSplitWork set (it is off), a call the caller alone ran in under
// it the last time the same fn's code was called with the same n and grain
// (a model's layer, run after run) runs inline while no worker polls.
func ParallelFor(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	threads := Threads()
	workers := threads
	if max := (n + grain - 1) / grain; workers > max {
		workers = max
	}
	if workers <= 1 || !split(threads) {
		inline(n, fn)
		return
	}
	chunk := (n + workers - 1) / workers
	splitOrInline(n, grain, chunk, workers, fn)
}

// inline runs fn(0, n) on the caller.
func inline(n int, fn func(lo, hi int)) {
	var t0, c0 int64
	if tracing {
		t0, c0 = traceNow(), threadCPU()
	}
	fn(0, n)
	if tracing {
		traceInline(fn, t0, c0)
	}
}

// DynamicFor calls fn on the ranges [lo, lo+chunk) (the last one shorter)
// that cover [0, n), run by the caller and up to Threads()-1 pool workers.
// The ranges are dealt in contiguous parts, one per goroutine (with two
// threads the caller's is the first half, the worker's the second), each
// run in order from its front; a goroutine that finishes its part takes the
// ranges left in the others from their back, so that a worker that is
// descheduled or late holds up at most the range it is running, and each
// goroutine works on neighbouring ranges (their inputs and outputs in its
// own core's caches). It returns when every call has returned. Use it where
// ranges cost unevenly or are many; ParallelFor where each call has a setup
// cost worth paying once per goroutine. Item order matters: items that
// share data should be neighbours. Like ParallelFor, it runs fn(0, n) on
// the caller while every core is busy.
func DynamicFor(n, chunk int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if chunk < 1 {
		chunk = 1
	}
	ranges := (n + chunk - 1) / chunk
	threads := Threads()
	workers := min(threads, ranges)
	if workers <= 1 || !split(threads) {
		inline(n, fn)
		return
	}
	splitOrInline(n, chunk, chunk, workers, fn)
}

// minSplitWork: a call that a single thread runs in less than this is not
// split while no worker polls (unless SetThreads fixed the thread count):
// waking a worker takes 1-3 us of the caller's and the worker's time, so
// splitting such a call saves at most half of it. 0 turns the rule off,
// and off it is: at 4 us it cost kiln serve CPU per request serving
// tinycnn to 16 gRPC clients on 2 busy cores (82 against 77.5 us, medians
// of 10 alternating rounds) and raised the one-client p50
// (bench/results/grpc-throughput.md, 2026-12-06 22:00). TestParallelForSmallWork
// sets it.
var minSplitWork time.Duration

// site is what the pool learned of one kind of call: fn's code, n and
// grain (a layer of a model, the same every run) and the time one item
// took on the caller the last time it was measured, in 1/256 ns.
type site struct {
	key  atomic.Uint64
	cost atomic.Uint64
	_    [48]byte
}

// sites is a small table of calls, indexed by a hash of their key: two
// calls that share an entry take turns in it (each then splits as if
// unknown, as every call did before the table).
var sites [512]site

// siteKey identifies a call by its function's code and its size.
func siteKey(fn func(lo, hi int), n, grain int) uint64 {
	k := uint64(reflect.ValueOf(fn).Pointer())
	k ^= uint64(n)*0x9e3779b97f4a7c15 ^ uint64(grain)*0xc2b2ae3d27d4eb4f
	return k | 1 // 0 is an empty entry
}

func siteOf(key uint64) *site { return &sites[(key^key>>29)%uint64(len(sites))] }

// splitOrInline runs a call the pool may split into workers ranges of
// chunk: inline where its site's last measured time is under minSplitWork
// and no worker is polling (one would have to be woken), else split; either way the caller's time per item is
// noted for the next call of the site. With a thread count fixed by
// SetThreads it always splits.
func splitOrInline(n, grain, chunk, workers int, fn func(lo, hi int)) {
	if threadsSet.Load() > 0 || minSplitWork <= 0 {
		run(n, chunk, workers, fn, false)
		return
	}
	// (the clock is read only here, where a wake-up may be saved: a call
	// that cannot split, or runs inline because every core is busy, is
	// not timed)
	t0 := clock()
	key := siteKey(fn, n, grain)
	st := siteOf(key)
	known := st.key.Load() == key
	if known && st.cost.Load()*uint64(n) < uint64(minSplitWork)<<8 && t0-load.polled.Load() >= int64(freshPoll) {
		// (a worker still polling on a core takes its part at once, without
		// a wake-up: a lone request's small layers split as before)
		inline(n, fn)
		st.cost.Store(uint64(clock()-t0) << 8 / uint64(n))
		return
	}
	if items, ns := run(n, chunk, workers, fn, true); items > 0 {
		st.cost.Store(uint64(ns) << 8 / uint64(items))
		if !known {
			st.key.Store(key)
		}
	}
}

// job is one ParallelFor or DynamicFor call. Jobs are recycled through
// jobFree once the caller and every worker woken for it are done with it
// (refs).
//
// Its ranges are dealt out in parts, one contiguous run of ranges per
// goroutine that takes part (the caller's is the first): each goroutine
// takes its own part's ranges from the front, in order, then takes what is
// left of the others' from their back. A goroutine thus works on
// neighbouring ranges (the same input rows, weight blocks and output
// lines, in its own core's caches) instead of every other range, and a
// part whose goroutine is late or descheduled is finished by the others.
type job struct {
	fn     func(lo, hi int)
	n      int
	chunk  int
	ranges int32
	nparts int32
	// parts[p] is part p's ranges not yet taken: the front index in the
	// low 32 bits, the end in the high 32, each part on its own cache
	// line (its owner takes from it for every range).
	parts []part
	_     [64]byte
	// slot hands the parts after the caller's to workers in the order
	// they arrive; pending counts the ranges not yet finished (each
	// goroutine subtracts the ranges it ran when it finds none left); refs
	// the goroutines that may still read the job (the caller and the
	// workers sent it).
	slot, pending, refs atomic.Int32
	// done receives one value when a worker finishes the last range
	// while the caller is still running or waiting.
	done chan struct{}
	// callerRan is the ranges the caller ran (set by its workFrom).
	callerRan int32
	trace     jobTrace
}

type part struct {
	r atomic.Uint64
	_ [56]byte
}

// take returns the next range of part p from its front (own) or back
// (stolen), or -1 when the part has none left.
func (j *job) take(p int32, front bool) int32 {
	r := &j.parts[p].r
	for {
		w := r.Load()
		lo, hi := uint32(w), uint32(w>>32)
		if lo >= hi {
			return -1
		}
		if front {
			if r.CompareAndSwap(w, uint64(hi)<<32|uint64(lo+1)) {
				return int32(lo)
			}
		} else if r.CompareAndSwap(w, uint64(hi-1)<<32|uint64(lo)) {
			return int32(hi - 1)
		}
	}
}

var jobFree = sync.Pool{New: func() any { return &job{done: make(chan struct{}, 1)} }}

// pool holds the parked workers; wake carries jobs to them.
var pool struct {
	mu      sync.Mutex
	started atomic.Int32
	wake    chan *job
}

func init() {
	// Room for a wake-up per worker of several concurrent calls; a full
	// channel means every worker already has work queued, and the caller
	// runs the ranges itself.
	pool.wake = make(chan *job, 256)
}

// ensureWorkers starts pool workers until there are at least n.
func ensureWorkers(n int) {
	if int(pool.started.Load()) >= n {
		return
	}
	pool.mu.Lock()
	for int(pool.started.Load()) < n {
		pool.started.Add(1)
		go worker()
	}
	pool.mu.Unlock()
}

// spinFor is how long a worker that finished a job, and a caller waiting
// for the last range of its job, poll before they block: a model's layers
// follow each other within microseconds, and a goroutine blocked in the
// runtime takes several to wake (a futex wake-up of its thread), which is
// a tenth of a small layer; ONNX Runtime's threads spin the same way. On a
// lightly loaded 2-core machine it took 10-30% off the CNNs' latency
// (ops/nn/NOTES.md, section 6); the polling yields to the process's other
// goroutines (runtime.Gosched), not to other processes. A worker whose
// polling finds its core taken by other goroutines stops at once and marks
// the pool busy (pool_load.go).
var spinFor = 50 * time.Microsecond

func worker() {
	for {
		j := nextJob()
		if tracing {
			j.traceDequeued()
		}
		j.work(false)
		j.release()
	}
}

// nextJob returns the next job woken for a worker: polling for spinFor,
// then blocking. The polling stops early, and marks the pool busy, when a
// turn of it finds that the core ran something else meanwhile (with a
// thread count fixed by SetThreads it polls for spinFor regardless).
//
// The polling reads the clock every turn (about 3% of a 2-core server's
// CPU samples at 16 gRPC clients): it is bounded by time (spinFor), not by
// turns, so reading the clock less often does not shorten it, and every
// 8 turns it noticed a core taken by other goroutines up to 7 turns later
// (tried on 2026-12-06: kiln serve's CPU per request did not fall).
func nextJob() *job {
	select {
	case j := <-pool.wake:
		return j
	default:
	}
	if d := int64(spinFor); d > 0 {
		start := clock()
		last := start
		for {
			select {
			case j := <-pool.wake:
				return j
			default:
			}
			t := clock()
			if t-last > int64(descheduledAfter) && threadsSet.Load() == 0 {
				markBusy(t)
				break
			}
			if t-start > d {
				break
			}
			load.polled.Store(t)
			last = t
			runtime.Gosched()
		}
	}
	return <-pool.wake
}

// run executes a job of n items in ranges of chunk with up to workers
// goroutines, the caller among them. When timed, it returns the items the
// caller ran itself and the nanoseconds from the call's start until it
// found no range left to run (before it waits for a worker's last range).
func run(n, chunk, workers int, fn func(lo, hi int), timed bool) (items int, ns int64) {
	var t0 int64
	if timed {
		t0 = clock()
	}
	ensureWorkers(workers - 1)
	j := jobFree.Get().(*job)
	j.setup(n, chunk, workers, fn)
	j.refs.Store(1)
	if tracing {
		j.traceBegin(traceNow())
	}
	for w := 1; w < workers && !(tracing && traceSolo()); w++ {
		j.refs.Add(1)
		select {
		case pool.wake <- j:
		default:
			j.refs.Add(-1)
		}
	}
	last := j.work(true)
	if timed {
		items, ns = min(int(j.callerRan)*chunk, n), clock()-t0
	}
	if !last {
		// A worker runs the last range: poll for spinFor, then block.
		if d := spinFor; d > 0 && j.pending.Load() != 0 {
			start := time.Now()
			for i := 1; j.pending.Load() != 0; i++ {
				if i%32 == 0 && time.Since(start) > d {
					break
				}
				runtime.Gosched()
			}
		}
		<-j.done
	}
	if tracing {
		j.traceEnd()
	}
	j.release()
	return items, ns
}

// setup makes j the job of n items in ranges of chunk, dealt in nparts
// parts of consecutive ranges (the first ones one range shorter where
// they do not divide evenly).
func (j *job) setup(n, chunk, nparts int, fn func(lo, hi int)) {
	ranges := (n + chunk - 1) / chunk
	j.fn, j.n, j.chunk, j.ranges = fn, n, chunk, int32(ranges)
	if cap(j.parts) < nparts {
		j.parts = make([]part, nparts)
	}
	j.parts = j.parts[:nparts]
	j.nparts = int32(nparts)
	for p := range nparts {
		lo, hi := p*ranges/nparts, (p+1)*ranges/nparts
		j.parts[p].r.Store(uint64(hi)<<32 | uint64(lo))
	}
	j.slot.Store(1)
	j.pending.Store(int32(ranges))
}

// work runs ranges of j until none is left to take: those of its own part
// (the caller's is part 0, a worker's the next not yet handed out), then
// those left in the others. It reports whether this goroutine finished the
// job's last range; a worker that does sends on j.done for the caller
// (isCaller false).
func (j *job) work(isCaller bool) bool {
	own := int32(0)
	if !isCaller {
		own = j.slot.Add(1) - 1
	}
	return j.workFrom(own, isCaller)
}

// workFrom is work for the goroutine handed slot own: part own first (when
// there is one), then what is left of the others.
func (j *job) workFrom(own int32, isCaller bool) bool {
	ran := int32(0)
	p, front := own%j.nparts, own < j.nparts
	for {
		i := j.take(p, front)
		if i < 0 {
			// This part is done: steal from the back of the next one,
			// until every part is.
			p, front = (p+1)%j.nparts, false
			if p != own%j.nparts {
				continue
			}
			if isCaller {
				j.callerRan = ran
				if tracing {
					j.traceCallerDone()
				}
			}
			// The ranges run count down once per goroutine, not per range:
			// pending's cache line then moves between the cores once per
			// goroutine and call.
			if ran == 0 || j.pending.Add(-ran) != 0 {
				return false
			}
			if !isCaller {
				j.done <- struct{}{}
			}
			return true
		}
		lo := int(i) * j.chunk
		var t0, c0 int64
		if tracing {
			t0, c0 = traceNow(), threadCPU()
		}
		j.fn(lo, min(lo+j.chunk, j.n))
		if tracing {
			j.traceRange(isCaller, t0, c0)
		}
		ran++
	}
}

// release drops one reference to j and recycles it after the last.
func (j *job) release() {
	if j.refs.Add(-1) == 0 {
		j.fn = nil
		jobFree.Put(j)
	}
}
