package serve

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// DefaultGCHeapFloor is kiln serve's default heap floor (--gc-heap-floor).
const DefaultGCHeapFloor = 64 << 20

// maxGCPercent bounds the GC percent the heap floor sets.
const maxGCPercent = 10000

// SetGCHeapFloor keeps the Go garbage collector from starting a cycle
// before the heap has grown by at least floor bytes since the last one,
// and returns a function that undoes it.
//
// Go's collector starts a cycle once the heap has grown by GOGC percent
// (100) of the live heap. A server whose live heap is small (a small
// model: tinycnn's kiln serve holds some 10 MB) and that allocates a few
// kilobytes a request (grpc-go's frames and messages, the engine's tensors
// of each run) runs a cycle every few thousand requests: on two cores
// serving tinycnn to 16 gRPC clients the collector took about a tenth of
// kiln serve's CPU. After each cycle the floor sets the GC percent to
// max(100, 100·floor/live): a large live heap (a large model) keeps Go's
// default, a small one gets at most floor bytes of garbage between cycles.
// GOMEMLIMIT still applies (the collector runs as the limit nears,
// whatever the percent).
//
// floor <= 0, or GOGC set in the environment (the user chose), leaves the
// collector as it is.
func SetGCHeapFloor(floor int64) (undo func()) {
	if floor <= 0 || os.Getenv("GOGC") != "" {
		return func() {}
	}
	f := &gcFloor{floor: uint64(floor)}
	f.orig = debug.SetGCPercent(100)
	debug.SetGCPercent(f.orig)
	if f.orig < 0 {
		return func() {} // collection turned off: nothing to tune
	}
	f.tune()
	f.arm()
	return f.stop
}

// gcFloor is one SetGCHeapFloor: it tunes the GC percent after each cycle,
// from a cleanup on an object the cycle found unreachable.
type gcFloor struct {
	floor   uint64
	orig    int
	stopped atomic.Bool
	mu      sync.Mutex
	// percent is the GC percent set last (for tests)
	percent int
}

// gcSentinel is the object whose cleanup runs after each cycle (larger
// than the tiny allocator's blocks, whose objects may share a block and
// outlive a cycle).
type gcSentinel struct{ _ [32]byte }

func (f *gcFloor) arm() {
	runtime.AddCleanup(new(gcSentinel), func(f *gcFloor) {
		if f.stopped.Load() {
			return
		}
		f.tune()
		f.arm()
	}, f)
}

// tune sets the GC percent from the live heap.
func (f *gcFloor) tune() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	live := uint64(0)
	if s[0].Value.Kind() == metrics.KindUint64 {
		live = s[0].Value.Uint64()
	}
	pct := max(f.orig, 100)
	if live > 0 && f.floor > live*uint64(pct)/100 {
		pct = int(min(f.floor*100/live, maxGCPercent))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped.Load() {
		return
	}
	if pct != f.percent {
		debug.SetGCPercent(pct)
		f.percent = pct
	}
}

func (f *gcFloor) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped.Swap(true) {
		debug.SetGCPercent(f.orig)
	}
}
