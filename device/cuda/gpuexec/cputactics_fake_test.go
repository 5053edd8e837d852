package gpuexec_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// convMatMulNet is image[batch,3,8,8] -> Conv(3x3, bias) -> Relu ->
// Flatten -> MatMul(256x16) -> Add -> "y": the convolution (a
// kiln::FusedConv once optimized, several CPU implementations to time) and
// a product the GPU tunes.
func convMatMulNet(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor { return ramp(7, 7, -0.5, shape...) }
	b := ir.NewBuilder("convmm", 17)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(3), ir.D(8), ir.D(8))
	h := b.Op("Conv", []*ir.Value{x, b.Const("w1", w(4, 3, 3, 3)), b.Const("b1", w(4))},
		ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []*ir.Value{h})
	h = b.Op("Flatten", []*ir.Value{h}, ir.IntAttr("axis", 1))
	h = b.Op("MatMul", []*ir.Value{h, b.Const("w2", w(256, 16))})
	h = b.Op("Add", []*ir.Value{h, b.Const("b2", w(16))})
	b.Output(h, "y")
	return marshal(t, b)
}

// timingEntries reads the timing cache file's entries' device keys.
func timingEntries(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Entries []struct {
			Device, Layer string
		}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range f.Entries {
		out = append(out, e.Device+" | "+e.Layer)
	}
	return out
}

// TestBuildTimesCPULayersFake: kiln build --device cuda (the builder with
// its defaults, tactic timing on) of a model whose convolution the GPU
// lacks, against the fake libraries, times that CPU layer as a CPU build
// would: the log says "1 timed", the plan's tactic table keeps the choice
// (which a load hands back to the CPU segment), and the timing cache holds the CPU's
// measurement under the CPU's fingerprint plus the kiln version, beside
// the GPU's, filed the same way (tactic.Key). A second build with the
// timing cache times nothing (the log says "0 timed, 1 from the timing
// cache") and chooses the same; the plan loads and runs with the chosen
// tactic; with --no-timing nothing is timed.
func TestBuildTimesCPULayersFake(t *testing.T) {
	gpuexec.WithoutFusedKernel(t, "FusedConv")
	fakeCUDA(t)
	model := convMatMulNet(t)
	cachePath := filepath.Join(t.TempDir(), "kiln.timing")
	line := regexp.MustCompile(`tactics of the CPU layers in (segment\d+): (\d+) timed, (\d+) from the timing cache; chosen: kiln::FusedConv (\S+) x1`)
	chosen := func(res *build.Result, notes string, timed, cached string) (string, plan.Tactic) {
		t.Helper()
		m := line.FindStringSubmatch(notes)
		if m == nil {
			t.Fatalf("the build log has no line for the CPU layers' tactics:\n%s", notes)
		}
		if m[2] != timed || m[3] != cached {
			t.Errorf("CPU layers: %s timed, %s from the timing cache; want %s and %s:\n%s", m[2], m[3], timed, cached, m[0])
		}
		for _, b := range res.Blobs {
			if strings.HasSuffix(b.Name, partition.CPUTacticsBlob) {
				t.Errorf("the plan has section %s: the CPU layers' choices belong in the header", b.Name)
			}
		}
		var conv string
		for _, l := range res.Header.Layers {
			if l.Op == "kiln::FusedConv" {
				conv = l.Name
				if l.Device != "cpu" {
					t.Errorf("layer %s on %q, want cpu", l.Name, l.Device)
				}
			}
		}
		handed := map[string]string{} // what a load gives the CPU segment
		for _, dt := range res.Header.DeviceTactics(0) {
			handed[dt.Layer] = dt.Tactic
		}
		if handed[conv] != m[4] {
			t.Errorf("a load hands back %v, want layer %s with tactic %s", handed, conv, m[4])
		}
		if len(res.Header.Tactics) == 0 {
			t.Fatal("no tactic table in the plan")
		}
		for _, pt := range res.Header.Tactics[0] {
			if pt.Layer == conv {
				if pt.Tactic != m[4] || pt.Time <= 0 || pt.Cached != (cached == "1") {
					t.Errorf("tactic table entry %+v, want tactic %s, a time, cached %v", pt, m[4], cached == "1")
				}
				return m[4], pt
			}
		}
		t.Fatalf("the plan's tactic table %+v does not show layer %s", res.Header.Tactics[0], conv)
		return "", plan.Tactic{}
	}

	res, notes := buildCUDA(t, "convmm", model, build.Options{TimingCache: cachePath},
		"(kiln::FusedConv) runs on the CPU: gpuexec: unsupported: ")
	t.Logf("build notes:\n%s", notes)
	first, firstTime := chosen(res, notes, "1", "0")

	cpuFP, err := cpu.Device{}.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	gpuFP, err := cuda.FingerprintOf(0)
	if err != nil {
		t.Fatal(err)
	}
	entries := timingEntries(t, cachePath)
	var cpuConv, gpu int
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e, tactic.Key(cpuFP).String()+" | ") && strings.Contains(e, "FusedConv"):
			cpuConv++
		case strings.HasPrefix(e, tactic.Key(gpuFP).String()+" | "):
			gpu++
		default:
			t.Errorf("timing cache entry %q is filed under neither %v nor %v", e, tactic.Key(cpuFP), tactic.Key(gpuFP))
		}
	}
	t.Logf("timing cache:\n%s", strings.Join(entries, "\n"))
	if cpuConv == 0 || gpu == 0 {
		t.Errorf("timing cache: %d CPU convolution entries and %d GPU entries, want both:\n%s", cpuConv, gpu, strings.Join(entries, "\n"))
	}

	again, notes := buildCUDA(t, "convmm", model, build.Options{TimingCache: cachePath})
	second, secondTime := chosen(again, notes, "0", "1")
	if second != first || secondTime.Time != firstTime.Time {
		t.Errorf("with the timing cache: %s (%v), want %s (%v) as timed", second, secondTime.Time, first, firstTime.Time)
	}
	if n := len(timingEntries(t, cachePath)); n != len(entries) {
		t.Errorf("the second build changed the timing cache: %d entries, had %d", n, len(entries))
	}
	m := loadPlan(t, again)
	runShapes(t, m, map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 2, 3, 8, 8)}, map[string]string{"y": "2x16"})

	none, notes := buildCUDA(t, "convmm", model, build.Options{NoTiming: true})
	if strings.Contains(notes, "tactics of the CPU layers") {
		t.Errorf("--no-timing build times CPU layers:\n%s", notes)
	}
	for _, b := range none.Blobs {
		if strings.HasSuffix(b.Name, partition.CPUTacticsBlob) {
			t.Errorf("--no-timing build has section %s", b.Name)
		}
	}
}
