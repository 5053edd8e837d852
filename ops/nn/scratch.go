package nn

import (
	"sync"
	"sync/atomic"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/ops"
)

// The CPU kernels of this package take most of their scratch memory from
// device/cpu, which measures it for the builder's workspace limit; the
// direct convolution's own buffers and packed filters are counted here and
// added (a sum of peaks: never less than the true peak).
func init() { ops.ScratchMeter = measureScratch }

var nnScratch struct {
	mu        sync.Mutex
	on        atomic.Bool
	cur, peak atomic.Int64
}

// measureScratch runs f and returns the peak scratch memory, in bytes, that
// device/cpu's kernels and this package's took meanwhile.
func measureScratch(f func()) int64 {
	nnScratch.mu.Lock()
	defer nnScratch.mu.Unlock()
	nnScratch.cur.Store(0)
	nnScratch.peak.Store(0)
	nnScratch.on.Store(true)
	n := cpu.MeasureScratch(f)
	nnScratch.on.Store(false)
	return n + nnScratch.peak.Load()
}

// scratchAdd counts n bytes taken (negative: given back) while a
// measurement runs.
func scratchAdd(n int64) {
	if !nnScratch.on.Load() {
		return
	}
	c := nnScratch.cur.Add(n)
	for {
		p := nnScratch.peak.Load()
		if c <= p || nnScratch.peak.CompareAndSwap(p, c) {
			return
		}
	}
}

// ScratchAdd counts n bytes (negative: given back) in this package's
// counter, added to device/cpu's peak by the meter: the CPU registry's
// convolutions (device/cpu/kernels: the direct convolution's buffers and
// packed filters) count there, as they did when they lived here.
func ScratchAdd(n int64) { scratchAdd(n) }
