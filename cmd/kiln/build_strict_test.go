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

func init() { device.Register(poollessGPU{}) }

// TestBuildStrictDevice (issue 10, item 2, through the CLI): kiln build for a
// device that lacks some layers builds a plan whose pooling runs on the
// CPU, and the plan matches the reference outputs; --strict-device refuses
// the same build, naming the layers.
func TestBuildStrictDevice(t *testing.T) {
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
