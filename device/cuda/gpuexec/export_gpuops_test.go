package gpuexec

import "testing"

// WithoutKernel removes the CUDA kernels of the default-domain op from the
// registry until the test ends: tests of what happens to an op the GPU
// lacks use it, so that they stay true as kernels are added (the op's CPU
// kernel still runs it).
func WithoutKernel(t testing.TB, op string) {
	t.Helper()
	k := opKey{"", op}
	defs, ok := registry[k]
	delete(registry, k)
	t.Cleanup(func() {
		if ok {
			registry[k] = defs
		}
	})
}

// Unchecked reports whether a kernel of the default-domain op is marked
// unchecked (not yet run on a GPU against the CPU engine).
func Unchecked(op string) bool {
	for _, d := range registry[opKey{"", op}] {
		if d.unchecked {
			return true
		}
	}
	return false
}
