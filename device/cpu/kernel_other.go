//go:build !(amd64 || arm64) || purego

package cpu

// kernels lists the kernels this CPU can run, the preferred one first.
func kernels() []*kernel { return []*kernel{genericKernel} }

// fmaPeak has no portable meaning: it reports false.
func fmaPeak(n int) bool { return false }
