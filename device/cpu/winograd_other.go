//go:build !amd64 || purego

package cpu

// winoRowsAsm has no assembly to run here: it does nothing.
func winoRowsAsm(coef []float32, ns, nd int, src, dst *rows) int { return 0 }
