//go:build amd64 && !purego

package cpu

// reorderAsm reorders with the AVX-512 transposes where they run, reporting
// whether it did.
func reorderAsm(blk, plain []float32, hw, np, lanes int, to bool) bool { return false }
