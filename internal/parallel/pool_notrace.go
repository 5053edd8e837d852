//go:build !kilnpooltrace

package parallel

// tracing is true in builds with the kilnpooltrace tag (pool_trace.go),
// which record every For and DynamicFor call for the pool's
// measurements (ops/nn/NOTES.md, section 19); in others the hooks are
// empty and compiled out.
const tracing = false

type jobTrace struct{}

func traceInline(fn func(lo, hi int), start, cpu0 int64) {}
func traceNow() int64                                    { return 0 }
func threadCPU() int64                                   { return 0 }
func traceSolo() bool                                    { return false }
func (j *job) traceBegin(start int64)                    {}
func (j *job) traceRange(caller bool, start, cpu0 int64) {}
func (j *job) traceDequeued()                            {}
func (j *job) traceCallerDone()                          {}
func (j *job) traceEnd()                                 { _ = j.trace }
