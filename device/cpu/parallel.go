package cpu

import "github.com/kilnai/kiln/internal/parallel"

// The thread pool lives in internal/parallel; these are its names as
// device/cpu's kernels, serve and the tools have always called them. Each
// is a single call, inlined at its call sites.

// tracing is parallel.Tracing: true in kilnpooltrace builds.
const tracing = parallel.Tracing

// ParallelFor is parallel.For: fn on disjoint ranges covering [0, n), about
// grain long or longer, over the caller and the pool's workers.
func ParallelFor(n, grain int, fn func(lo, hi int)) { parallel.For(n, grain, fn) }

// DynamicFor is parallel.DynamicFor: fn on the ranges of chunk items
// covering [0, n), dealt to the caller and the pool's workers.
func DynamicFor(n, chunk int, fn func(lo, hi int)) { parallel.DynamicFor(n, chunk, fn) }

// Threads is parallel.Threads: how many goroutines heavy kernels split
// their work into.
func Threads() int { return parallel.Threads() }

// SetThreads is parallel.SetThreads: fixes the thread count (0: automatic).
func SetThreads(n int) error { return parallel.SetThreads(n) }

// RequestStarted is parallel.RequestStarted: a server began a request.
func RequestStarted() { parallel.RequestStarted() }

// RequestDone is parallel.RequestDone: a server finished a request.
func RequestDone() { parallel.RequestDone() }

// RequestsInFlight is parallel.RequestsInFlight.
func RequestsInFlight() int { return parallel.RequestsInFlight() }
