package gpuexec

import (
	"os"
	"testing"
)

// TestMain runs this package's tests with every kernel of the registry
// (KILN_CUDA_UNVERIFIED=1): they test the kernels themselves, checked on
// the CPU (support, compilation) and, on a GPU, against the CPU engine.
// TestUnverifiedFallBack checks the default, where a kernel marked
// unchecked (not yet run on a GPU) leaves its nodes to the CPU.
func TestMain(m *testing.M) {
	if _, set := os.LookupEnv(EnvUnverified); !set {
		os.Setenv(EnvUnverified, "1")
	}
	os.Exit(m.Run())
}
