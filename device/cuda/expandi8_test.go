package cuda

import (
	"strings"
	"testing"
)

// TestExpandI8Source checks the executor's module (ExpandI8Source): both
// kernels named, expand_i8u2's parameters those the probe measured (3 + 3
// rings, two blocks an SM, the conversion-free epilogue), its shared memory
// the probe's, and the source compiles: for sm_90a where NVRTC has it (no
// spills), else to compute_90 PTX, which must hold the bulk tensor copies,
// wgmma and the dequantizing kernel's conversion.
func TestExpandI8Source(t *testing.T) {
	if a, b := ExpandI8Source(false), ExpandI8Source(true); a == b || !strings.Contains(a, "#define BIGK 0 ") || !strings.Contains(b, "#define BIGK 1 ") {
		t.Errorf("ExpandI8Source(false) must build BIGK 0 (the build checked on an H100), ExpandI8Source(true) BIGK 1")
	}
	src := ExpandI8Source(false)
	for _, want := range []string{" " + ExpandI8Kernel + "(", " " + DequantI8Kernel + "(", "#define STAGES 3\n", "#define ZS 3\n",
		"#define FASTCVT 1\n", "__launch_bounds__(NCONS + 32, 2)"} {
		if !strings.Contains(src, want) {
			t.Errorf("the source has no %q", want)
		}
	}
	if got, want := ExpandI8SharedMem(), 2*3*8192+3*16384+96+1024; got != want {
		t.Errorf("shared memory %d, want %d", got, want)
	}
	if expandI8U2.threads() != ExpandI8Threads || expandI8U2.perSM != ExpandI8BlocksPerSM {
		t.Errorf("threads %d and blocks an SM %d, the constants say %d and %d", expandI8U2.threads(), expandI8U2.perSM, ExpandI8Threads, ExpandI8BlocksPerSM)
	}
	for _, c := range []struct {
		p, n, tiles int
	}{{256 * 56 * 56, 256, 6272 * 2}, {256 * 14 * 14, 1024, 392 * 8}, {128, 128, 1}} {
		if got := ExpandI8Tiles(c.p, c.n); got != c.tiles {
			t.Errorf("ExpandI8Tiles(%d, %d) = %d, want %d", c.p, c.n, got, c.tiles)
		}
	}
	n := openNVRTC(t)
	if compileExpand(t, n, "expand_i8x.cu", src, "sm_90a") != nil {
		return
	}
	c, err := n.Compile("expand_i8x.cu", src, "--gpu-architecture=compute_90")
	if err != nil {
		t.Fatal(err)
	}
	for _, ins := range []string{"cp.async.bulk.tensor", "wgmma.mma_async", ".entry " + DequantI8Kernel, "cvt.rn.f16.f32"} {
		if !strings.Contains(string(c.PTX), ins) {
			t.Errorf("the PTX has no %q", ins)
		}
	}
}
