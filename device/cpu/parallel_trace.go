//go:build kilnpooltrace

package cpu

import "github.com/kilnai/kiln/internal/parallel"

// The pool's tracing (built with -tags kilnpooltrace) under device/cpu's
// names; internal/parallel/pool_trace.go documents it.

// TraceCall is one traced For or DynamicFor call.
type TraceCall = parallel.TraceCall

// TraceSolo and TraceCPU are the pool's switches (parallel.TraceSolo,
// parallel.TraceCPU): callers Store and Load through them as before.
var (
	TraceSolo = &parallel.TraceSolo
	TraceCPU  = &parallel.TraceCPU
)

// TraceNow is parallel.TraceNow.
func TraceNow() int64 { return parallel.TraceNow() }

// TraceThreadCPU is parallel.TraceThreadCPU.
func TraceThreadCPU() int64 { return parallel.TraceThreadCPU() }

// TraceStart is parallel.TraceStart.
func TraceStart() { parallel.TraceStart() }

// TraceStop is parallel.TraceStop.
func TraceStop() []TraceCall { return parallel.TraceStop() }

// FuncName is parallel.FuncName.
func FuncName(pc uintptr) string { return parallel.FuncName(pc) }
