//go:build kilnpooltrace

package parallel

import (
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file records every For and DynamicFor call while tracing is
// on (TraceStart to TraceStop), for the pool's measurements: how much of an
// inference runs on one thread, how late a worker takes its first range,
// how long the caller waits for the last. Build with -tags kilnpooltrace;
// ops/nn/NOTES.md (section 19) has what it showed.
const tracing = true

// TraceCall is one For or DynamicFor call. Times are nanoseconds
// from the process's trace clock (TraceNow).
type TraceCall struct {
	// Func is the entry of the range function (FuncName names it).
	Func uintptr
	// Inline calls ran fn(0, n) on the caller alone (one thread or too
	// little work to split).
	Inline bool
	// Start and End are when the call began and returned; CallerDone when
	// the caller found no range left to take; Pickup when a worker started
	// its first range (0: none did).
	Start, End, CallerDone, Pickup int64
	// CallerOn and WorkerOn are the CPUs the caller began on and the
	// first worker ran its first range on (-1: none).
	CallerOn, WorkerOn int
	// Dequeued is when a worker first took the job from the pool's
	// queue (0: none did before the call returned).
	Dequeued int64
	// Ranges the call was split into, and how many workers ran.
	Ranges, WorkerRanges int
	// CallerWork and WorkerWork are the time spent inside fn by the
	// caller and by the workers; CallerCPU and WorkerCPU the CPU time of
	// their threads meanwhile (what time-sharing with other processes
	// does not inflate).
	CallerWork, WorkerWork, CallerCPU, WorkerCPU int64
}

type jobTrace struct {
	fn                     uintptr
	start, callerDone      int64
	pickup, dequeued       atomic.Int64
	callerOn               int
	workerOn               atomic.Int32
	callerWork, workerWork atomic.Int64
	callerCPU, workerCPU   atomic.Int64
	workerRanges           atomic.Int32
}

var trace struct {
	on    atomic.Bool
	mu    sync.Mutex
	calls []TraceCall
}

var traceBase = time.Now()

// TraceNow returns the trace clock: monotonic nanoseconds.
func TraceNow() int64 { return traceNow() }

func traceNow() int64 { return int64(time.Since(traceBase)) }

// getcpu returns the CPU the calling thread runs on.
func getcpu() int {
	var c, node uint32
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&c)), uintptr(unsafe.Pointer(&node)), 0); e != 0 {
		return -1
	}
	return int(c)
}

// TraceSolo, while true, has split calls wake no worker: the caller runs
// every range of the split alone (the split's own cost, without a second
// thread).
var TraceSolo atomic.Bool

func traceSolo() bool { return TraceSolo.Load() }

// TraceThreadCPU returns the CPU time of the calling goroutine's thread.
func TraceThreadCPU() int64 { return threadCPU() }

func threadCPU() int64 {
	if !TraceCPU.Load() {
		return 0
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// TraceCPU, while true, has the trace read each range's thread CPU time
// too: a system call per range (about a microsecond in a VM, which the
// ranges' times then include), and wrong where the goroutine moves to
// another thread mid-range.
var TraceCPU atomic.Bool

// TraceStart starts recording calls (dropping any recorded before).
func TraceStart() {
	trace.mu.Lock()
	trace.calls = trace.calls[:0]
	trace.mu.Unlock()
	trace.on.Store(true)
}

// TraceStop stops recording and returns the calls recorded since
// TraceStart, in the order they returned.
func TraceStop() []TraceCall {
	trace.on.Store(false)
	trace.mu.Lock()
	defer trace.mu.Unlock()
	return append([]TraceCall(nil), trace.calls...)
}

// FuncName names the function at pc (a TraceCall's Func).
func FuncName(pc uintptr) string {
	if f := runtime.FuncForPC(pc); f != nil {
		return f.Name()
	}
	return "?"
}

func record(c TraceCall) {
	trace.mu.Lock()
	trace.calls = append(trace.calls, c)
	trace.mu.Unlock()
}

func traceInline(fn func(lo, hi int), start, cpu0 int64) {
	if !trace.on.Load() {
		return
	}
	end := traceNow()
	record(TraceCall{Func: reflect.ValueOf(fn).Pointer(), Inline: true, Start: start, End: end, CallerDone: end,
		Ranges: 1, CallerWork: end - start, CallerCPU: threadCPU() - cpu0})
}

func (j *job) traceBegin(start int64) {
	j.trace.fn = reflect.ValueOf(j.fn).Pointer()
	j.trace.start = start
	j.trace.callerOn = getcpu()
	j.trace.workerOn.Store(-1)
	j.trace.callerDone = 0
	j.trace.pickup.Store(0)
	j.trace.dequeued.Store(0)
	j.trace.callerWork.Store(0)
	j.trace.workerWork.Store(0)
	j.trace.workerRanges.Store(0)
	j.trace.callerCPU.Store(0)
	j.trace.workerCPU.Store(0)
}

func (j *job) traceRange(caller bool, start, cpu0 int64) {
	d := traceNow() - start
	c := threadCPU() - cpu0
	if caller {
		j.trace.callerWork.Add(d)
		j.trace.callerCPU.Add(c)
		return
	}
	j.trace.workerWork.Add(d)
	j.trace.workerCPU.Add(c)
	j.trace.workerRanges.Add(1)
	if j.trace.pickup.CompareAndSwap(0, start) {
		j.trace.workerOn.Store(int32(getcpu()))
	}
}

func (j *job) traceDequeued() { j.trace.dequeued.CompareAndSwap(0, traceNow()) }

func (j *job) traceCallerDone() { j.trace.callerDone = traceNow() }

func (j *job) traceEnd() {
	if !trace.on.Load() {
		return
	}
	record(TraceCall{Func: j.trace.fn, Start: j.trace.start, End: traceNow(), CallerDone: j.trace.callerDone,
		Pickup: j.trace.pickup.Load(), Dequeued: j.trace.dequeued.Load(),
		CallerOn: j.trace.callerOn, WorkerOn: int(j.trace.workerOn.Load()), Ranges: int(j.ranges), WorkerRanges: int(j.trace.workerRanges.Load()),
		CallerWork: j.trace.callerWork.Load(), WorkerWork: j.trace.workerWork.Load(),
		CallerCPU: j.trace.callerCPU.Load(), WorkerCPU: j.trace.workerCPU.Load()})
}
