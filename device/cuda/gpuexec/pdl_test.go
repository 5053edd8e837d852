package gpuexec

import (
	"regexp"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
)

// TestPDLKernelsWait checks that every kernel gpuexec may launch with
// programmatic dependent launch (pdlKernels) begins with KILN_PDL_WAIT()
// in the embedded sources: one that touched memory before it would race
// with the kernel before it. It also checks that the kernels exist.
func TestPDLKernelsWait(t *testing.T) {
	src := cuda.KernelSource()
	if len(pdlKernels) == 0 {
		t.Fatal("no pdlKernels")
	}
	for k := range pdlKernels {
		// the definition: name(params) {  then its first statement
		re := regexp.MustCompile(`__global__ void(?: __launch_bounds__\(\d+\))?\s+` + k + `\([^)]*\)\s*\{\s*([^;]*;)`)
		m := re.FindStringSubmatch(src)
		if m == nil {
			t.Errorf("kernel %s: no definition in the embedded sources", k)
			continue
		}
		if strings.TrimSpace(m[1]) != "KILN_PDL_WAIT();" {
			t.Errorf("kernel %s begins with %q, not KILN_PDL_WAIT();", k, m[1])
		}
	}
	if !strings.Contains(src, `extern "C" __global__ void `+pdlProbe+"(") {
		t.Errorf("no %s kernel", pdlProbe)
	}
}

// TestPDLProbeInPTX compiles the kernels with NVRTC for compute_90 and
// checks that the PDL kernels' PTX waits (griddepcontrol.wait) and that
// kiln_pdl_probe writes 1 (below sm_90 both macros give nothing and 0, so
// such an image never gets programmatic launches; not compiled here, to
// spare the 20 s). Skips without NVRTC.
func TestPDLProbeInPTX(t *testing.T) {
	nv, err := cuda.OpenNVRTC(cuda.Options{})
	if err != nil {
		t.Skipf("needs NVRTC (libnvrtc.so.13, .12 or .11.2; Debian: apt-get install libnvrtc11.2): %v", err)
	}
	for _, tt := range []struct {
		arch  string
		waits bool
	}{{"compute_90", true}} {
		c, err := cuda.CompileKernels(nv, tt.arch)
		if err != nil {
			t.Fatal(err)
		}
		ptx := string(c.PTX)
		entries := map[string]string{}
		parts := strings.Split(ptx, ".entry ")
		for _, p := range parts[1:] {
			name := p[:strings.IndexAny(p, "( \n")]
			entries[name] = p
		}
		for k := range pdlKernels {
			body, ok := entries[k]
			if !ok {
				t.Errorf("%s: no entry %s", tt.arch, k)
				continue
			}
			if got := strings.Contains(body, "griddepcontrol.wait"); got != tt.waits {
				t.Errorf("%s: %s waits: %v, want %v", tt.arch, k, got, tt.waits)
			}
		}
		probe, ok := entries[pdlProbe]
		if !ok {
			t.Fatalf("%s: no entry %s", tt.arch, pdlProbe)
		}
		want := "0"
		if tt.waits {
			want = "1"
		}
		// the constant is stored directly or through a register
		if !regexp.MustCompile(`(st\.global\.u32\s+\[%rd\d+\]|mov\.u32\s+%r\d+), `+want+`;`).MatchString(probe) || !strings.Contains(probe, "st.global.u32") {
			t.Errorf("%s: %s does not store %s:\n%s", tt.arch, pdlProbe, want, probe)
		}
	}
}

// withPDL runs test with programmaticLaunch on.
func withPDL(t *testing.T, test func(*testing.T)) {
	defer func(p bool) { programmaticLaunch = p }(programmaticLaunch)
	programmaticLaunch = true
	test(t)
}

// TestOpsPDLOnGPU is TestOpsOnGPU (every op case, float32 and half, each
// run eagerly, captured and replayed) with programmatic dependent launch
// on: the pdlKernels among them start before the kernel or library call
// before them ends. Needs a GPU.
func TestOpsPDLOnGPU(t *testing.T) { withPDL(t, TestOpsOnGPU) }

// TestModelsFP16PDLOnGPU is TestModelsFP16OnGPU with programmatic
// dependent launch on. Needs a GPU and the shared models.
func TestModelsFP16PDLOnGPU(t *testing.T) { withPDL(t, TestModelsFP16OnGPU) }
