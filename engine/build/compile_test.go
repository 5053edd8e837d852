package build_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// fakeGPU is a device that runs graphs itself (a device.Executor), the way
// the CUDA device does, here through the CPU engine. Its programs carry a
// compiled section that must come back from the plan.
type fakeGPU struct{}

var (
	fakeMu       sync.Mutex
	fakeCompiled []device.ExecOptions
)

func (fakeGPU) Name() string { return "fakegpu" }

func (fakeGPU) Fingerprint() (device.Fingerprint, error) {
	return device.Fingerprint{"device": "fakegpu", "compute": "9.0"}, nil
}

func (fakeGPU) Compile(g *ir.Graph, o device.ExecOptions) (device.Program, error) {
	fakeMu.Lock()
	fakeCompiled = append(fakeCompiled, o)
	fakeMu.Unlock()
	if o.Blobs != nil && string(o.Blobs["kernels.sm_90"]) != "cubin for "+g.Name {
		return nil, errors.New("fakegpu: the plan lost the compiled kernels")
	}
	e, err := engine.New(g)
	if err != nil {
		return nil, err
	}
	return fakeProgram{e, g.Name}, nil
}

type fakeProgram struct {
	e    *engine.Engine
	name string
}

func (p fakeProgram) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return p.e.Run(ctx, in)
}
func (p fakeProgram) Close() error { return nil }
func (p fakeProgram) Blobs() map[string][]byte {
	return map[string][]byte{"kernels.sm_90": []byte("cubin for " + p.name)}
}

// fakeDevices are kiln's devices and fakeGPU: the set the tests give the
// builder and the loader (no device registers itself).
var fakeDevices = append(devices.All(), fakeGPU{})

// TestExecutorDevice builds for a device that compiles graphs itself,
// writes the plan with the device's sections, and runs it from the plan.
func TestExecutorDevice(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := build.Build(context.Background(), model, build.Options{Device: "fakegpu:1", Devices: fakeDevices, Precision: build.FP16})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tiny.plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Header.Accuracy) == 0 || len(res.Blobs) != 1 || res.Header.Layers[0].Precision != build.FP16 {
		t.Fatalf("plan for an executor device: accuracy %s, blobs %v, layer %+v", res.Header.Accuracy, res.Blobs, res.Header.Layers[0])
	}
	// Without the device in its set the loader says which it lacks.
	if _, err := kiln.Load(path); !errors.Is(err, device.ErrUnknown) || !strings.Contains(err.Error(), `"fakegpu:1"`) {
		t.Errorf("kiln.Load of a fakegpu plan without fakegpu: %v, want device.ErrUnknown naming it", err)
	}
	m, err := kiln.LoadWith(path, kiln.LoadOptions{Devices: fakeDevices})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in, want, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	got := out["probabilities"].Float32s()
	for i, w := range want.Float32s() {
		if d := got[i] - w; d > 1e-5 || d < -1e-5 {
			t.Fatalf("output %d = %v, want %v", i, got[i], w)
		}
	}
	fakeMu.Lock()
	last := fakeCompiled[len(fakeCompiled)-1]
	fakeMu.Unlock()
	if last.Ordinal != 1 || last.Precision != build.FP16 || last.MaxShapes["image"][0] != 32 || last.Blobs == nil {
		t.Errorf("the plan's program was compiled with %+v", last)
	}
	if _, err := m.RunObserved(context.Background(), map[string]*tensor.Tensor{"image": in}, nil); err == nil {
		t.Error("RunObserved on a device program should fail clearly")
	}
	if res, err := build.Build(context.Background(), model, build.Options{Device: "fakegpu", Devices: fakeDevices, Precision: build.INT8, CalibBatches: 2}); err != nil {
		t.Errorf("INT8 on an executor device: %v", err) // compile_int8_test.go tests what it does
	} else {
		res.Close()
	}
}
