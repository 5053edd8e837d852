//go:build !amd64 || purego

package cpu

// reorderAsm reports false: no assembly reorders on this machine.
func reorderAsm(blk, plain []float32, hw, np, lanes int, to bool) bool { return false }
