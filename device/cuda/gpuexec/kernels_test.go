package gpuexec

import (
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
)

// TestOpKernelsCompile compiles the embedded kernel sources with NVRTC to
// PTX for sm_90 (no GPU needed) and checks that every kernel the registry's
// op families launch is there.
func TestOpKernelsCompile(t *testing.T) {
	nv, err := cuda.OpenNVRTC(cuda.Options{})
	if err != nil {
		t.Skipf("needs NVRTC (libnvrtc.so.13, .12 or .11.2; Debian: apt-get install libnvrtc11.2 from non-free): %v", err)
	}
	c, err := cuda.CompileKernels(nv, "compute_90")
	if err != nil {
		t.Fatal(err)
	}
	ptx := string(c.PTX)
	for _, k := range append(append([]string{}, cuda.KernelNames...), opKernelNames()...) {
		if !strings.Contains(ptx, ".entry "+k+"(") {
			t.Errorf("PTX has no entry %s", k)
		}
	}
}
