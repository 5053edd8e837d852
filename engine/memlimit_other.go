//go:build !linux

package engine

// machineMemory returns 0: the machine's memory is not read on this
// system (DefaultMemoryLimit falls back to a fixed size).
func machineMemory() int64 { return 0 }
