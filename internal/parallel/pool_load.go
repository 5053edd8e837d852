package parallel

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// This file decides, call by call, whether For and DynamicFor split
// their work over the pool or run it on the caller alone.
//
// Splitting a layer pays when another core is free to run the worker: a
// lone request (kiln run, a server with one client) runs its layers on
// every core. It costs when every core is already busy, as in a server
// whose clients keep more requests in flight than there are cores: the
// worker waits behind other goroutines for a core, the caller runs every
// range itself anyway (it never waits for a worker that has not started),
// and the wake-up, the worker's polling and the cache lines that move
// between cores are spent for nothing (on two cores serving tinycnn to 16
// gRPC clients, 127 us of CPU a request instead of 81 us on one thread).
//
// The pool tells the two apart by watching its own workers, without being
// told about requests: a worker that polls for its next job (after one,
// for spinFor) runs a loop that yields to the process's other goroutines
// at each turn (runtime.Gosched). While its core has nothing else to do
// the loop comes round within a microsecond; when a turn takes longer than
// descheduledAfter, other goroutines (or other processes) held the core
// meanwhile. The worker then marks the pool busy for busyHold and parks.
// A call splits while a worker polled within freshPoll (it is on a core
// and takes a part at once) or when the pool is not marked busy; else it
// runs inline and wakes no one. Once busyHold has passed a call splits
// again: that call is the probe, and its worker, woken into a busy
// machine, marks the pool busy again at its first turn.

const (
	// freshPoll: a worker whose polling loop came round this recently is
	// on a core.
	freshPoll = 10 * time.Microsecond
	// descheduledAfter: a polling loop's turn that took this long means
	// the core ran something else meanwhile (a turn takes well under a
	// microsecond on a core with nothing else to run).
	descheduledAfter = 20 * time.Microsecond
	// busyHold: how long calls run inline after a worker found its core
	// taken, before one splits again to see whether it still is.
	busyHold = 500 * time.Microsecond
)

// A server can also say how many requests it is working on
// (RequestStarted, RequestDone): while there are at least as many as
// threads, every thread has a request of its own to work on, and calls run
// on their callers without waiting for a worker to find its core taken.

// threadsSet is SetThreads's value: 0 for automatic.
var threadsSet atomic.Int32

// load is the pool's view of the cores: when a worker last polled and
// until when the pool is marked busy, in nanoseconds of clock.
var load struct {
	polled    atomic.Int64
	busyUntil atomic.Int64
	_         [48]byte
}

// requests counts the requests a server said it is working on.
var requests struct {
	_ [64]byte
	n atomic.Int32
	_ [60]byte
}

// RequestStarted tells the pool that a server started working on a request
// (from reading it to answering it); RequestDone that it finished. While
// at least Threads() requests are in flight, For and DynamicFor
// run each call on its caller alone (unless SetThreads fixed the thread
// count): every core has a request of its own to work on, and splitting
// one request's layers would only move work between cores.
func RequestStarted() { requests.n.Add(1) }

// RequestDone tells the pool that a request RequestStarted counted is
// answered.
func RequestDone() { requests.n.Add(-1) }

// RequestsInFlight returns the requests RequestStarted counted that are
// not done yet.
func RequestsInFlight() int { return int(requests.n.Load()) }

var clockBase = time.Now()

// clock returns monotonic nanoseconds since the process started.
func clock() int64 { return int64(time.Since(clockBase)) }

// procs caches runtime.GOMAXPROCS(0): reading it takes the Go scheduler's
// global lock, and Threads is called by every kernel of every request (on
// two cores serving tinycnn to 16 gRPC clients, the lock was about 1.5% of
// kiln serve's CPU, contended between the cores). A goroutine started with
// the first read refreshes it every procsEvery, and SetThreads refreshes
// it at once: a change of GOMAXPROCS is seen within procsEvery, without
// reading a clock on the hot path.
var procs atomic.Int32

var procsOnce sync.Once

// procsEvery is how often procs is refreshed.
const procsEvery = 100 * time.Millisecond

// procsDirect makes every read call runtime.GOMAXPROCS (the package's
// tests, which change it and call at once, set it before they start).
var procsDirect bool

// ReadGOMAXPROCSEachCall makes Threads read runtime.GOMAXPROCS at every
// call instead of the copy refreshed every procsEvery: for the TestMain of
// a package whose tests change GOMAXPROCS and call at once (as
// testing.AllocsPerRun does, running its function with GOMAXPROCS 1).
// Call it before any goroutine uses the pool.
func ReadGOMAXPROCSEachCall() { procsDirect = true }

// gomaxprocs returns runtime.GOMAXPROCS(0), as procs last read it.
func gomaxprocs() int {
	if procsDirect {
		return runtime.GOMAXPROCS(0)
	}
	if n := procs.Load(); n > 0 {
		return int(n)
	}
	return refreshProcs()
}

// refreshProcs reads GOMAXPROCS into procs, starting the refresher on the
// first call.
func refreshProcs() int {
	n := runtime.GOMAXPROCS(0)
	procs.Store(int32(n))
	procsOnce.Do(func() {
		go func() {
			for {
				time.Sleep(procsEvery)
				procs.Store(int32(runtime.GOMAXPROCS(0)))
			}
		}()
	})
	return n
}

// Threads returns the number of goroutines heavy kernels split their work
// into: GOMAXPROCS, or fewer when SetThreads says so.
func Threads() int {
	p := gomaxprocs()
	if n := int(threadsSet.Load()); n > 0 && n < p {
		return n
	}
	return p
}

// SetThreads fixes the number of threads (the caller's goroutine and pool
// workers) For and DynamicFor split each call into, as ONNX
// Runtime's intra_op_num_threads does: n >= 1 splits every call into at
// most n (at most GOMAXPROCS), whether or not the other cores are busy (1
// runs every call on its caller); 0, the default, splits into GOMAXPROCS
// while another core is free and runs a call on its caller alone while the
// pool finds every core busy. It applies to the whole process, from the
// next call on.
func SetThreads(n int) error {
	if n < 0 || n > 1<<16 {
		return fmt.Errorf("cpu: %d threads: want 0 (automatic) or a positive count", n)
	}
	threadsSet.Store(int32(n))
	refreshProcs()
	return nil
}

// split reports whether a call that could use several threads (threads,
// Threads()) should wake workers for them (else the caller runs it
// alone): always with a thread count fixed by SetThreads; else not while
// a server has at least threads requests in flight, and otherwise while a
// worker is polling on a core or the pool is not marked busy.
func split(threads int) bool {
	if threadsSet.Load() > 0 {
		return true
	}
	if int(requests.n.Load()) >= threads {
		return false
	}
	t := clock()
	if t-load.polled.Load() < int64(freshPoll) {
		return true
	}
	return t >= load.busyUntil.Load()
}

// markBusy marks the pool busy until busyHold after t: a worker's polling
// loop was descheduled at t.
func markBusy(t int64) {
	until := t + int64(busyHold)
	for {
		old := load.busyUntil.Load()
		if old >= until || load.busyUntil.CompareAndSwap(old, until) {
			return
		}
	}
}
