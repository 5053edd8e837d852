package gpuexec

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// modelsDir is where the reference models are (../shared/models from the
// repository root), overridable with KILN_MODELS.
func modelsDir() string {
	if d := os.Getenv("KILN_MODELS"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "..", "shared", "models")
}

func modelPath(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(modelsDir(), name, "model.onnx")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("needs the reference model %s (../shared/models or $KILN_MODELS): %v", name, err)
	}
	return p
}

// testInputs reads a model's test_data_set_0 inputs (input_N.pb is the
// model's input N).
func testInputs(t testing.TB, name string) map[string]*tensor.Tensor {
	t.Helper()
	path := modelPath(t, name)
	f, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(modelsDir(), name, "test_data_set_0")
	out := map[string]*tensor.Tensor{}
	i := 0
	for _, in := range g.Inputs {
		if in.Const != nil {
			continue // an initializer listed among the inputs
		}
		x, _, err := onnx.ReadTensorFile(filepath.Join(dir, fmt.Sprintf("input_%d.pb", i)))
		if err != nil {
			t.Skipf("needs the test inputs of %s: %v", name, err)
		}
		out[in.Name] = x
		i++
	}
	return out
}

// randomImages returns inputs like the model's test inputs with the batch
// dimension set to batch and normal random values.
func randomImages(t testing.TB, name string, batch int, seed uint64) map[string]*tensor.Tensor {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	out := map[string]*tensor.Tensor{}
	for n, x := range testInputs(t, name) {
		shape := append([]int{batch}, x.Shape[1:]...)
		y := tensor.New(tensor.Float32, shape...)
		for i := range y.Float32s() {
			y.Float32s()[i] = float32(r.NormFloat64())
		}
		out[n] = y
	}
	return out
}

// optimizedGraph loads a model, sets its inputs' shapes to those of the
// given tensors, optimizes it (level 2) and infers every shape.
func optimizedGraph(t testing.TB, path string, inputs map[string]*tensor.Tensor) *ir.Graph {
	t.Helper()
	return graphAt(t, path, inputs, 2)
}

// graphAt loads a model with the inputs' shapes, optimized at level (0:
// not at all) with every shape inferred.
func graphAt(t testing.TB, path string, inputs map[string]*tensor.Tensor, level int) *ir.Graph {
	t.Helper()
	f, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range g.Inputs {
		if x, ok := inputs[v.Name]; ok {
			v.Type.Shape = ir.KnownShape(x.Shape...)
		}
	}
	if err := optimize.Run(g, level, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// cpuEngine loads a model on kiln's CPU engine as it is, without
// optimization (what kiln.Load does with an ONNX file; this package's
// internal tests cannot import package kiln, which imports this one).
func cpuEngine(t testing.TB, path string) *engine.Engine {
	t.Helper()
	f, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(g)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// cpuRun runs the model on kiln's CPU engine.
func cpuRun(t testing.TB, path string, inputs map[string]*tensor.Tensor) map[string]*tensor.Tensor {
	t.Helper()
	out, err := cpuEngine(t, path).Run(context.Background(), inputs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareFloat32 checks |got - want| <= atol + rtol*|want| elementwise and
// returns the largest absolute difference.
func compareFloat32(t testing.TB, name string, got, want *tensor.Tensor, rtol, atol float64) float64 {
	t.Helper()
	if got.DType != tensor.Float32 || want.DType != tensor.Float32 || tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) {
		t.Fatalf("%s: got %v%v, want %v%v", name, got.DType, got.Shape, want.DType, want.Shape)
	}
	g, w := got.Float32s(), want.Float32s()
	worst, bad := 0.0, 0
	for i := range w {
		d := math.Abs(float64(g[i]) - float64(w[i]))
		if math.IsNaN(float64(g[i])) || d > atol+rtol*math.Abs(float64(w[i])) {
			if bad < 5 {
				t.Errorf("%s[%d] = %g, want %g", name, i, g[i], w[i])
			}
			bad++
		}
		if d > worst || math.IsNaN(d) {
			worst = d
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements differ (largest difference %g)", name, bad, len(w), worst)
	}
	return worst
}

// loadCPU loads a model on kiln's CPU engine and returns a function that
// runs it.
func loadCPU(t testing.TB, path string) func(map[string]*tensor.Tensor) {
	t.Helper()
	e := cpuEngine(t, path)
	return func(in map[string]*tensor.Tensor) {
		if _, err := e.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
}
