//go:build !linux

package cuda

// KeepSignals: see signals_linux.go; kiln's CUDA path runs on Linux only.
func KeepSignals() (restore func()) { return func() {} }
