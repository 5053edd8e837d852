package engine

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
)

// ErrMemory is returned when an engine would need more memory than its
// limit (Options.MemoryLimit) for one execution context: at build time
// for the arena of the largest shapes its profiles allow, at run time for
// the arena or a tensor of a run with inputs beyond them. The memory is
// never allocated, so that a request or a model too large for the machine
// is an error of that request or model, not the end of the process (Go
// cannot recover from a failed allocation).
var ErrMemory = errors.New("engine: memory limit exceeded")

// Bounds of DefaultMemoryLimit.
const (
	minDefaultLimit      = 256 << 20
	fallbackDefaultLimit = 8 << 30
)

var defaultLimit = sync.OnceValue(func() int64 {
	limit := machineMemory() / 2
	if limit <= 0 {
		limit = fallbackDefaultLimit
	}
	// a soft limit the program set (GOMEMLIMIT) is the memory it wants to
	// live in
	if soft := debug.SetMemoryLimit(-1); soft > 0 && soft < math.MaxInt64 && soft < limit {
		limit = soft
	}
	return max(limit, minDefaultLimit)
})

// DefaultMemoryLimit returns the memory limit of an execution context when
// Options.MemoryLimit is 0: half of this machine's memory (or of the
// cgroup's memory limit, when lower), lowered to GOMEMLIMIT when that is
// set and smaller, and never below 256 MiB; 8 GiB where the machine's
// memory cannot be read.
func DefaultMemoryLimit() int64 { return defaultLimit() }

// memoryLimit returns the limit o sets, math.MaxInt64 for none.
func (o Options) memoryLimit() int64 {
	switch {
	case o.MemoryLimit > 0:
		return o.MemoryLimit
	case o.MemoryLimit < 0:
		return math.MaxInt64
	}
	return DefaultMemoryLimit()
}

// FormatBytes spells a byte count for messages: "1.5 GiB (1610612736 bytes)".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s (%d bytes)", v, suffix, n)
}

// limitString spells a limit (math.MaxInt64: none).
func limitString(n int64) string {
	if n == math.MaxInt64 {
		return "no limit"
	}
	return FormatBytes(n)
}
