//go:build !amd64 || purego

package cpu

// bdAsm reports false: there is no assembly for the blocked dense kernel
// here, and blockedDense runs bdKernelGo.
func bdAsm() bool { return false }

func bdKernel(a *bdArgs, nb, r, lanes int) {
	panic("cpu: no blocked convolution assembly on this platform")
}

func bdStemKind(kw, s int) int { return -1 }

func bdStem(a *bdArgs, r, kind int) {
	panic("cpu: no blocked convolution assembly on this platform")
}
