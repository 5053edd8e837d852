package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Tracing is true in builds with the kilnpooltrace tag (pool_trace.go):
// kernels that would skip For for a single range call it anyway then, so
// that the trace sees them.
const Tracing = tracing

// For calls fn on disjoint ranges [lo, hi) covering [0, n): as many
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
// started (on a loaded machine it runs every range itself). For
// allocates nothing itself; fn, if it is a closure that escapes, is the
// caller's allocation. It may be called from many goroutines at once and
// from within fn.
func For(n, grain int, fn func(lo, hi int)) {
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
	run(n, chunk, workers, fn)
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
// ranges cost unevenly or are many; For where each call has a setup
// cost worth paying once per goroutine. Item order matters: items that
// share data should be neighbours. Like For, it runs fn(0, n) on
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
	run(n, chunk, workers, fn)
}

// job is one For or DynamicFor call. Jobs are recycled through
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
	done  chan struct{}
	trace jobTrace
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
// goroutines, the caller among them.
func run(n, chunk, workers int, fn func(lo, hi int)) {
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
	if !j.work(true) {
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
			if tracing && isCaller {
				j.traceCallerDone()
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
