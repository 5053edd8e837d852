package gpuexec_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// The scaffolding of the tests that build a model for cuda against the
// fake libraries as kiln build does, read the build notes, and run the
// plan as a user loads it.

// fakeCUDA points the CUDA loader at the fake libraries (with this
// machine's NVRTC) for the rest of the test, or skips it (FakeLibs).
func fakeCUDA(t *testing.T) {
	t.Helper()
	t.Setenv(cuda.EnvLibPath, gpuexec.FakeLibs(t))
}

// ramp returns a float32 tensor of shape whose element i is
// float32(i%mod)/div + off: weights that are not all alike.
func ramp(mod int, div, off float32, shape ...int) *tensor.Tensor {
	x := tensor.New(tensor.Float32, shape...)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(i%mod)/div + off
	}
	return x
}

// marshal returns b's graph as an ONNX model.
func marshal(t *testing.T, b *ir.Builder) []byte {
	t.Helper()
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// buildCUDA builds model for cuda with o (its Device set) through the
// builder, failing the test on an error, checks that the build notes say
// each of says, and returns the result (closed when the test ends) and
// its notes, one string.
func buildCUDA(t *testing.T, name string, model []byte, o build.Options, says ...string) (*build.Result, string) {
	t.Helper()
	o.Device = "cuda"
	res, err := build.BuildBytes(context.Background(), name, model, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	notes := buildNotes(res)
	for _, s := range says {
		if !strings.Contains(notes, s) {
			t.Errorf("build notes do not say %q:\n%s", s, notes)
		}
	}
	return res, notes
}

// buildNotes returns the build's notes, one string.
func buildNotes(res *build.Result) string { return strings.Join(res.Header.Notes, "\n") }

// loadPlan writes res as a plan file and loads it as a user does
// (kiln.Load), closed when the test ends.
func loadPlan(t *testing.T, res *build.Result) *kiln.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), res.Header.Model.Name+".plan")
	if err := res.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	m, err := kiln.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// runShapes runs m on in and checks that each output of want has that
// shape ("2x4x1x1") in float32, or in dtype when want's value says it
// ("int64 0x3"): the fakes compute nothing, so shapes are what a fake
// run can check.
func runShapes(t *testing.T, m *kiln.Model, in map[string]*tensor.Tensor, want map[string]string) {
	t.Helper()
	out, err := m.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		dt, shape := "float32", w
		if d, s, ok := strings.Cut(w, " "); ok {
			dt, shape = d, s
		}
		if y := out[name]; y == nil || y.DType.String() != dt || tensor.ShapeString(y.Shape) != shape {
			t.Errorf("output %s is %v, want %s %s", name, y, dt, shape)
		}
	}
}
