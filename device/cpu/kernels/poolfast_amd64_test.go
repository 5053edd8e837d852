//go:build amd64 && !purego

package kernels

import (
	"testing"

	"golang.org/x/sys/cpu"
)

// asmModes lists the settings tests run the fast kernels with: assembly
// (when the CPU has AVX-512) and pure Go.
func asmModes() []bool {
	if cpu.X86.HasAVX512F {
		return []bool{true, false}
	}
	return []bool{false}
}

// setPoolAsm switches the pooling kernels to assembly or Go for the test.
func setPoolAsm(t *testing.T, on bool) {
	old := poolAsm
	poolAsm = on
	t.Cleanup(func() { poolAsm = old })
}
