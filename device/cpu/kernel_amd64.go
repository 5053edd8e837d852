//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// kernels lists the kernels this CPU can run, the preferred one first.
func kernels() []*kernel {
	var ks []*kernel
	_ = cpu.X86.HasAVX512F
	return append(ks, genericKernel)
}
