package kernels_test

import (
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
)

// Helpers of the convolutions' benchmarks (conv*_bench_test.go), as ops/nn's
// benchmarks have them.

// sharedModelsDir holds the shared reference models (one folder each, with
// model.onnx and test_data_set_0).
const sharedModelsDir = "../../../../shared/models"

// loadGraph reads an ONNX model.
func loadGraph(tb testing.TB, path string) *ir.Graph {
	tb.Helper()
	f, err := onnx.Load(path)
	if err != nil {
		tb.Skipf("needs %s: %v", path, err)
	}
	tb.Cleanup(func() { f.Close() })
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}
