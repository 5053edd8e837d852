// Package parallel is kiln's CPU thread pool: For and DynamicFor split a
// kernel's work over the caller and a process-wide pool of workers,
// Threads and SetThreads say into how many, and RequestStarted and
// RequestDone let a server tell the pool how many requests it is running.
// It uses the standard library (and golang.org/x/sys for the
// kilnpooltrace build), so that op packages can run their loops in
// parallel without importing a device. device/cpu re-exports it under its
// older names (cpu.ParallelFor, cpu.DynamicFor, cpu.Threads...).
package parallel
