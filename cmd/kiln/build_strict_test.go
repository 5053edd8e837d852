package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// poollessGPU is a test device that runs graphs (on the CPU engine) but no
// pooling layer: kiln build gives those to the CPU, or refuses with
// --strict-device.
type poollessGPU struct{}

func (poollessGPU) Name() string { return "poollessgpu" }
func (poollessGPU) Fingerprint() (device.Fingerprint, error) {
	return device.Fingerprint{"device": "poollessgpu"}, nil
}
func (poollessGPU) Supports(n *ir.Node, g *ir.Graph) error {
	if strings.Contains(n.OpType, "Pool") {
		return fmt.Errorf("%w: op %s has no poollessgpu implementation", device.ErrUnsupported, n.OpType)
	}
	return nil
}
func (poollessGPU) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	for _, n := range g.Nodes {
		if strings.Contains(n.OpType, "Pool") {
			return nil, fmt.Errorf("poollessgpu: asked to compile %s", n.OpType)
		}
	}
	e, err := engine.New(g)
	if err != nil {
		return nil, err
	}
	return poollessProgram{e}, nil
}

type poollessProgram struct{ e *engine.Engine }

func (p poollessProgram) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return p.e.Run(ctx, in)
}
func (p poollessProgram) Close() error { return nil }

// withDevice makes the commands see d beside kiln's devices until t ends
// (the set --device and a plan's device are looked up in).
func withDevice(t *testing.T, d device.Device) {
	t.Helper()
	old := deviceSet
	deviceSet = append(devices.All(), d)
	t.Cleanup(func() { deviceSet = old })
}

// TestBuildStrictDevice (issue 10, item 2, through the CLI): kiln build for a
// device that lacks some layers builds a plan whose pooling runs on the
// CPU, and the plan matches the reference outputs; --strict-device refuses
// the same build, naming the layers.
func TestBuildStrictDevice(t *testing.T) {
	withDevice(t, poollessGPU{})
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	in, out, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "set")
	os.MkdirAll(data, 0o755)
	if err := onnx.SaveTensor(filepath.Join(data, "input_0.pb"), "image", in); err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(data, "output_0.pb"), "probabilities", out); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(dir, "tiny.plan")
	if code := buildCmd([]string{model, "-o", plan, "--device", "poollessgpu"}); code != exitOK {
		t.Fatalf("kiln build --device poollessgpu exited %d", code)
	}
	if code := runCmd([]string{plan, "--data", data}); code != exitOK {
		t.Fatalf("kiln run of the partitioned plan exited %d", code)
	}
	// kiln inspect shows where each layer runs and why pooling is on the CPU
	var code int
	shown := captureStdout(t, func() { code = inspectCmd([]string{plan}) })
	if code != exitOK {
		t.Fatalf("kiln inspect exited %d", code)
	}
	for _, want := range []string{"layers (7: 5 on poollessgpu, 2 on the CPU):", " device ", "cpu    fp32",
		"on the CPU: device: unsupported: op MaxPool has no poollessgpu implementation"} {
		if !strings.Contains(shown, want) {
			t.Errorf("kiln inspect does not show %q:\n%s", want, shown)
		}
	}
	var msg bytes.Buffer
	old := errOut
	errOut = &msg
	defer func() { errOut = old }()
	strict := filepath.Join(dir, "strict.plan")
	if code := buildCmd([]string{model, "-o", strict, "--device", "poollessgpu", "--strict-device"}); code != exitError {
		t.Fatalf("kiln build --strict-device exited %d, want %d", code, exitError)
	}
	if !strings.Contains(msg.String(), "Pool") {
		t.Errorf("the refusal does not name the layers that would fall back: %q", msg.String())
	}
	if _, err := os.Stat(strict); err == nil {
		t.Error("--strict-device wrote a plan")
	}
}

// TestConformanceDevice (issue 10, item 6, through the CLI): kiln
// conformance --device builds each node test for the device as kiln build
// does, and counts the passed tests that ran entirely on it apart from
// those with layers on the CPU (here the pooling tests on poollessgpu).
func TestConformanceDevice(t *testing.T) {
	withDevice(t, poollessGPU{})
	const suite = "/usr/share/libonnx-testdata/data/node"
	var dirs []string
	for _, name := range []string{"test_relu", "test_maxpool_2d_default", "test_averagepool_2d_default", "test_add"} {
		d := filepath.Join(suite, name)
		if _, err := os.Stat(d); err != nil {
			t.Skipf("needs the ONNX node tests (Debian's libonnx-testdata): %v", err)
		}
		dirs = append(dirs, d)
	}
	var code int
	out := captureStdout(t, func() { code = conformanceCmd(append([]string{"--device", "poollessgpu", "-v"}, dirs...)) })
	if code != exitOK {
		t.Fatalf("kiln conformance --device poollessgpu exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		"ok   test_maxpool_2d_default (0 of 1 layers on poollessgpu)",
		"ok   test_relu\n",
		"4 passed, 0 failed, 0 skipped; of the passed, 2 entirely on poollessgpu, 2 with layers on the CPU",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
