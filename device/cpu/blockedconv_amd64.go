//go:build amd64 && !purego

package cpu

// bdAsm reports whether blockedDense runs the AVX-512 kernel: the active
// kernel is the AVX-512 one (tests switch it to exercise the others).
func bdAsm() bool { return false }

func bdKernel(a *bdArgs, nb, r, lanes int) {
	bdKernelGo(a, nb, r, lanes)
}
