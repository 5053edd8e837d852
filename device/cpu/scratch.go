package cpu

import (
	"sync"
	"sync/atomic"
)

// scratch tracks the scratch memory kernels take while MeasureScratch runs:
// buffers handed out by the floatPools (counted until returned) and
// transformed weights (counted for the rest of the measurement).
var scratch struct {
	mu        sync.Mutex // one measurement at a time
	on        atomic.Bool
	cur, peak atomic.Int64
}

// MeasureScratch runs f and returns the peak scratch memory, in bytes, the
// kernels of this package took meanwhile: im2col tiles, padded planes,
// Winograd transforms and transformed filters. Measurements are serialized;
// kernels running on other goroutines at the same time are counted too.
func MeasureScratch(f func()) int64 {
	scratch.mu.Lock()
	defer scratch.mu.Unlock()
	scratch.cur.Store(0)
	scratch.peak.Store(0)
	scratch.on.Store(true)
	defer scratch.on.Store(false)
	f()
	return scratch.peak.Load()
}

// ScratchAdd counts n bytes of scratch memory taken (negative: given
// back) by a kernel outside this package, such as packed weights of the
// CPU kernel registry (device/cpu/kernels), while MeasureScratch runs, so
// that the builder's workspace limit for tactics counts them.
func ScratchAdd(n int64) { scratchAdd(n) }

// scratchAdd counts n bytes taken (negative: given back).
func scratchAdd(n int64) {
	if !scratch.on.Load() {
		return
	}
	c := scratch.cur.Add(n)
	for {
		p := scratch.peak.Load()
		if c <= p || scratch.peak.CompareAndSwap(p, c) {
			return
		}
	}
}
