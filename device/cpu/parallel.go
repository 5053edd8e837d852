package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Threads returns the number of goroutines heavy kernels split their work
// into: GOMAXPROCS.
func Threads() int { return runtime.GOMAXPROCS(0) }

// ParallelFor calls fn on disjoint ranges [lo, hi) covering [0, n): as many
// equal ranges as Threads(), but no more than n/grain rounded up (so a
// range is about grain long or longer). It returns when every call has
// returned. Small n runs inline on the caller's goroutine.
//
// The ranges are run by the caller and by the workers of a pool that lives
// as long as the process (Threads()-1 goroutines, parked between calls):
// each call wakes at most one worker per range beyond the caller's, and
// whoever is running takes the next range not yet taken, so the caller
// never waits for a worker that has not started (on a loaded machine it
// runs every range itself). ParallelFor allocates nothing itself; fn, if
// it is a closure that escapes, is the caller's allocation. It may be
// called from many goroutines at once and from within fn.
func ParallelFor(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	workers := Threads()
	if max := (n + grain - 1) / grain; workers > max {
		workers = max
	}
	if workers <= 1 {
		fn(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	run(n, chunk, workers, fn)
}

// DynamicFor calls fn on the ranges [lo, lo+chunk) (the last one shorter)
// that cover [0, n), taken in order from a shared counter by the caller and
// up to Threads()-1 pool workers, so that a worker that is descheduled or
// late holds up at most the range it is running. It returns when every call
// has returned. Use it where ranges cost unevenly or are many; ParallelFor
// where each call has a setup cost worth paying once per goroutine.
func DynamicFor(n, chunk int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if chunk < 1 {
		chunk = 1
	}
	ranges := (n + chunk - 1) / chunk
	workers := min(Threads(), ranges)
	if workers <= 1 {
		fn(0, n)
		return
	}
	run(n, chunk, workers, fn)
}

// job is one ParallelFor or DynamicFor call. Jobs are recycled through
// jobFree once the caller and every worker woken for it are done with it
// (refs).
type job struct {
	fn     func(lo, hi int)
	n      int
	chunk  int
	ranges int32
	// next is the index of the next range to take; pending the number of
	// ranges not yet finished; refs the goroutines that may still read
	// the job (the caller and the workers sent it).
	next, pending, refs atomic.Int32
	// done receives one value when a worker finishes the last range
	// while the caller is still running or waiting.
	done chan struct{}
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
// goroutines (runtime.Gosched), not to other processes.
var spinFor = 50 * time.Microsecond

func worker() {
	for {
		j := nextJob()
		j.work(false)
		j.release()
	}
}

// nextJob returns the next job woken for a worker: polling for spinFor,
// then blocking.
func nextJob() *job {
	select {
	case j := <-pool.wake:
		return j
	default:
	}
	if d := spinFor; d > 0 {
		start := time.Now()
		for i := 1; ; i++ {
			select {
			case j := <-pool.wake:
				return j
			default:
			}
			if i%32 == 0 && time.Since(start) > d {
				break
			}
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
	ranges := (n + chunk - 1) / chunk
	j.fn, j.n, j.chunk, j.ranges = fn, n, chunk, int32(ranges)
	j.next.Store(0)
	j.pending.Store(int32(ranges))
	j.refs.Store(1)
	for w := 1; w < workers; w++ {
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
	j.release()
}

// work runs ranges of j until none is left to take. It reports whether
// this goroutine finished the job's last range; a worker that does sends
// on j.done for the caller (isCaller false).
func (j *job) work(isCaller bool) bool {
	last := false
	for {
		i := j.next.Add(1) - 1
		if i >= j.ranges {
			return last
		}
		lo := int(i) * j.chunk
		j.fn(lo, min(lo+j.chunk, j.n))
		if j.pending.Add(-1) == 0 {
			last = true
			if !isCaller {
				j.done <- struct{}{}
			}
		}
	}
}

// release drops one reference to j and recycles it after the last.
func (j *job) release() {
	if j.refs.Add(-1) == 0 {
		j.fn = nil
		jobFree.Put(j)
	}
}
