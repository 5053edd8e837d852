//go:build !amd64 || purego

package cpu

// kernels lists the kernels this CPU can run, the preferred one first.
func kernels() []*kernel { return []*kernel{genericKernel} }
