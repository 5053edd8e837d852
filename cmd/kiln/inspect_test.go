package main

import (
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fakeCUDA builds the fake libcuda, libcudnn and libcublasLt of
// device/cuda/testdata into a directory with this machine's NVRTC linked
// beside them, and points kiln at it (KILN_CUDA_LIB_PATH) for the test. It
// skips without a C compiler or NVRTC, as the fake-library tests of
// device/cuda do.
func fakeCUDA(t *testing.T) {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("needs a C compiler (cc) to build the fake CUDA libraries: %v", err)
	}
	dir := t.TempDir()
	for src, lib := range map[string]string{"fakecuda.c": "libcuda.so.1", "fakecudnn.c": "libcudnn.so.9", "fakecublaslt.c": "libcublasLt.so.13"} {
		out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, lib), filepath.Join("..", "..", "device", "cuda", "testdata", src)).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", lib, err, out)
		}
	}
	for _, d := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"} {
		found, _ := filepath.Glob(filepath.Join(d, "libnvrtc.so.*"))
		for _, f := range found {
			if err := os.Symlink(f, filepath.Join(dir, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
		if len(found) > 0 {
			t.Setenv(cuda.EnvLibPath, dir)
			return
		}
	}
	t.Skip("needs NVRTC (libnvrtc.so.13, .12 or .11.2; Debian: apt-get install libnvrtc11.2)")
}

// inspectNet is image[batch,3,8,8] -> Conv+bias -> Relu -> MaxPool ->
// Einsum (four operands) -> Flatten -> Gemm+bias -> Softmax: cuDNN, kiln's
// kernels, a layer the GPU does not run (Einsum of more than three
// operands), an alias and cuBLASLt.
func inspectNet(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(i%7)/7 - 0.5
		}
		return x
	}
	b := ir.NewBuilder("inspectnet", 17)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(3), ir.D(8), ir.D(8))
	h := b.Op("Conv", []*ir.Value{x, b.Const("w1", w(4, 3, 3, 3)), b.Const("b1", w(4))},
		ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []*ir.Value{h})
	h = b.Op("MaxPool", []*ir.Value{h}, ir.IntsAttr("kernel_shape", 2, 2), ir.IntsAttr("strides", 2, 2))
	// an Einsum of four operands: more than the GPU's kernel takes
	h = b.Op("Einsum", []*ir.Value{h, b.Const("sc", w(4)), b.Const("sh", w(4)), b.Const("sw", w(4))}, ir.StringAttr("equation", "nchw,c,h,w->nchw"))
	h = b.Op("Flatten", []*ir.Value{h})
	h = b.Op("Gemm", []*ir.Value{h, b.Const("w2", w(10, 64)), b.Const("b2", w(10))}, ir.IntAttr("transB", 1))
	h = b.Op("Softmax", []*ir.Value{h})
	b.Output(h, "probabilities")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// volatile matches what changes between builds and machines in kiln
// inspect's output: the plan's size, kiln version and date, the model's
// hash (it changes with the ONNX writer) and the device's fingerprint.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?m)^plan .*$`), "plan       (masked: size, kiln version, date)"},
	{regexp.MustCompile(`(?m)^model      sha256 .*$`), "model      sha256 (masked)"},
	{regexp.MustCompile(`(?m)^device     cuda \[.*\]$`), "device     cuda [masked: fingerprint]"},
}

// TestInspectCUDAFake (issue 10, item 7, through the CLI): kiln build
// --device cuda against the fake CUDA libraries (whose events measure
// every timing as 1.5 ms) writes a plan that kiln inspect shows with, for
// every layer on the GPU, its tactic (cuDNN's algorithm, cuBLASLt's
// heuristic result, kiln's kernels), precision and tuned time, the
// fallback layer with its reason, and the device memory; --json carries
// the same. The text output is compared with
// testdata/inspect_cuda_fake.golden (refresh with -update), the build log
// left out. FP16 and --no-timing builds show their precision and no times.
func TestInspectCUDAFake(t *testing.T) {
	fakeCUDA(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "inspectnet.onnx")
	if err := os.WriteFile(model, inspectNet(t), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(name string, flags ...string) string {
		t.Helper()
		out := filepath.Join(dir, name)
		var code int
		said := captureStdout(t, func() { code = buildCmd(append([]string{model, "-o", out, "--device", "cuda"}, flags...)) })
		if code != exitOK {
			t.Fatalf("kiln build --device cuda %v exited %d", flags, code)
		}
		// the build's summary gives the device's memory, not only the
		// CPU arena (0 B when every layer is on the GPU)
		if !strings.Contains(said, "  on cuda: weights ") || !strings.Contains(said, "library workspace") {
			t.Errorf("kiln build --device cuda %v does not give the device memory:\n%s", flags, said)
		}
		return out
	}
	inspect := func(args ...string) string {
		t.Helper()
		var code int
		out := captureStdout(t, func() { code = inspectCmd(args) })
		if code != exitOK {
			t.Fatalf("kiln inspect %v exited %d:\n%s", args, code, out)
		}
		return out
	}

	fp32 := build("fp32.plan")
	shown := inspect(fp32)
	text, _, _ := strings.Cut(shown, "\nbuild log:")
	for _, v := range volatile {
		text = v.re.ReplaceAllString(text, v.with)
	}
	golden := filepath.Join("testdata", "inspect_cuda_fake.golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if text != string(want) {
		t.Errorf("kiln inspect of a fake-built cuda plan differs from %s (run with -update to accept):\n%s", golden, text)
	}

	// kiln run --dump-profile of the partitioned plan times its segments
	// (a device runs a segment as one graph): the CPU one names its op.
	var code int
	profiled := captureStdout(t, func() { code = runCmd([]string{fp32, "--iterations", "2", "--dump-profile"}) })
	if code != exitOK || !strings.Contains(profiled, "per-segment times (mean over 2 runs") ||
		!regexp.MustCompile(`(?m)^  \d+ +cpu +\S+ x\d`).MatchString(profiled) ||
		!regexp.MustCompile(`(?m)^  \d+ +cuda +\S`).MatchString(profiled) {
		t.Errorf("kiln run --dump-profile of a partitioned cuda plan exited %d:\n%s", code, profiled)
	}

	// --json: the same facts, for tools.
	var h plan.Header
	if err := json.Unmarshal([]byte(inspect("--json", fp32)), &h); err != nil {
		t.Fatal(err)
	}
	if m := h.Stats.DeviceMemory; m == nil || m.WeightBytes == 0 || m.ArenaBytes == 0 || m.WorkspaceBytes == 0 {
		t.Errorf("device memory in the JSON: %+v", m)
	}
	if len(h.Tactics) != 1 {
		t.Fatalf("%d tactic sets, want 1 (one profile)", len(h.Tactics))
	}
	tactics := map[string]plan.Tactic{}
	for _, tt := range h.Tactics[0] {
		tactics[tt.Layer] = tt
	}
	for _, l := range h.Layers {
		tt, ok := tactics[l.Name]
		switch {
		case l.Device == "cpu":
			if ok || l.Fallback == "" {
				t.Errorf("CPU layer %s (%s): tactic %+v, fallback %q", l.Name, l.Op, tt, l.Fallback)
			}
		case l.Op == "Flatten":
			if !ok || !strings.HasPrefix(tt.Tactic, "none: an alias") || tt.Time != 0 {
				t.Errorf("alias %s: tactic %+v", l.Name, tt)
			}
		default:
			if !ok || tt.Tactic == "" || tt.Time != 1500000 || l.Precision != "fp32" {
				t.Errorf("GPU layer %s (%s, %s): tactic %+v, want one timed at the fakes' 1.5 ms", l.Name, l.Op, l.Precision, tt)
			}
		}
	}

	for _, tt := range []struct {
		name, flag, precision string
		timed                 bool
	}{
		{"fp16", "--fp16", "fp16", true},
		{"untimed", "--no-timing", "fp32", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			shown := inspect(build(tt.name+".plan", tt.flag))
			for _, want := range []string{"on cuda    weights ", "cudnn ", "cublaslt algo 42 (heuristic #0 of ", " cuda   " + tt.precision + " "} {
				if !strings.Contains(shown, want) {
					t.Errorf("kiln inspect does not show %q:\n%s", want, shown)
				}
			}
			if got := strings.Contains(shown, "1.500 ms"); got != tt.timed {
				t.Errorf("times shown: %v, want %v:\n%s", got, tt.timed, shown)
			}
			if got := strings.Contains(shown, "not timed (built with --no-timing)"); got == tt.timed {
				t.Errorf("says not timed: %v:\n%s", got, shown)
			}
		})
	}
}

// TestInspectOldDevicePlan: a cuda plan written before kiln recorded the
// device's layer reports (layers with their device, no tactics, no device
// memory) still inspects, saying what it lacks.
func TestInspectOldDevicePlan(t *testing.T) {
	h := plan.Header{Device: "cuda", Precision: "fp16", OptLevel: 2, Layers: []plan.Layer{
		{Name: "conv", Op: "kiln::FusedConv", Device: "cuda", Precision: "fp16", Inputs: []string{"image"}, Outputs: []string{"c"}},
		{Name: "pool", Op: "LpPool", Device: "cpu", Precision: "fp32", Fallback: "op LpPool has no CUDA implementation", Inputs: []string{"c"}, Outputs: []string{"y"}},
	}}
	path := filepath.Join(t.TempDir(), "old.plan")
	if err := plan.WriteFile(path, h, examples.TinyCNN(), nil); err != nil {
		t.Fatal(err)
	}
	p, err := plan.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var b strings.Builder
	printPlan(&b, p)
	for _, want := range []string{
		"on cuda    memory not recorded in this plan",
		"layers (2: 1 on cuda, 1 on the CPU):",
		"  0    conv                         kiln::FusedConv          cuda   fp16                -\n",
		"       on the CPU: op LpPool has no CUDA implementation\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("kiln inspect does not show %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "layers timed") || strings.Contains(b.String(), "not timed") {
		t.Errorf("a plan without tactics talks of timing:\n%s", b.String())
	}
}
