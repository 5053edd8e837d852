package gpuexec

import "testing"

// WithoutFusedKernel is WithoutKernel for one of kiln's fused ops
// (domain "kiln": "FusedConv", "FusedMatMul"), which the optimizer makes of
// the model's convolutions and products: tests of the CPU layers of a
// device build take the GPU's kernel away so that the layer falls back
// (the GPU runs every float 2-D convolution there is).
func WithoutFusedKernel(t testing.TB, op string) {
	t.Helper()
	k := opKey{"kiln", op}
	defs, ok := registry[k]
	delete(registry, k)
	t.Cleanup(func() {
		if ok {
			registry[k] = defs
		}
	})
}
