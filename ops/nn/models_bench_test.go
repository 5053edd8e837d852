package nn_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// sharedModelsDir holds the shared reference models (one folder each, with
// model.onnx and test_data_set_0/input_N.pb).
const sharedModelsDir = "../../../shared/models"

// BenchmarkFusedModels times every shared model on its test input, as
// loaded (O0) and after optimize.Run at level 3 (O3, the fused ops),
// alternating the two in every iteration (one arena context each) so that
// both see the same load. It reports the median milliseconds per inference
// of each (O0-ms, O3-ms) and their ratio (O3/O0).
//
//	go test ./ops/nn -run x -bench FusedModels -benchtime 40x
func BenchmarkFusedModels(b *testing.B) {
	ms, _ := filepath.Glob(filepath.Join(sharedModelsDir, "*", "model.onnx"))
	if len(ms) == 0 {
		b.Skipf("needs the reference models in %s (model.onnx and test_data_set_0 per model)", sharedModelsDir)
	}
	sort.Strings(ms)
	for _, m := range ms {
		dir := filepath.Dir(m)
		b.Run(filepath.Base(dir), func(b *testing.B) {
			var ctxs [2]*engine.Context
			var in map[string]*tensor.Tensor
			for i, level := range []int{0, 3} {
				g := loadGraph(b, m, level)
				probe, err := engine.New(g)
				if err != nil {
					b.Fatal(err)
				}
				var shapes map[string][]int
				in, shapes = dataSet(b, dir, probe)
				e, err := engine.NewWithOptions(loadGraph(b, m, level), engine.Options{MaxShapes: shapes})
				if err != nil {
					b.Fatal(err)
				}
				ctxs[i] = e.NewContext()
				if _, err := ctxs[i].Run(context.Background(), in); err != nil { // warm up
					b.Fatal(err)
				}
			}
			var times [2][]float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j, c := range ctxs {
					start := time.Now()
					if _, err := c.Run(context.Background(), in); err != nil {
						b.Fatal(err)
					}
					times[j] = append(times[j], float64(time.Since(start))/1e6)
				}
			}
			b.StopTimer()
			o0, o3 := medianMs(times[0]), medianMs(times[1])
			b.ReportMetric(o0, "O0-ms")
			b.ReportMetric(o3, "O3-ms")
			b.ReportMetric(o3/o0, "O3/O0")
		})
	}
}

// loadGraph reads an ONNX model, optimized at level (0: as is).
func loadGraph(tb testing.TB, path string, level int) *ir.Graph {
	tb.Helper()
	f, err := onnx.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		tb.Fatal(err)
	}
	if level > 0 {
		if err := optimize.Run(g, level, nil); err != nil {
			tb.Fatal(err)
		}
	}
	return g
}

// dataSet reads test_data_set_0's inputs, named as e's inputs in order,
// and returns them with their shapes.
func dataSet(tb testing.TB, dir string, e *engine.Engine) (map[string]*tensor.Tensor, map[string][]int) {
	tb.Helper()
	in := map[string]*tensor.Tensor{}
	shapes := map[string][]int{}
	for i, v := range e.Inputs() {
		p := filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", i))
		if _, err := os.Stat(p); err != nil {
			tb.Skipf("needs %s", p)
		}
		t, _, err := onnx.ReadTensorFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		in[v.Name] = t
		shapes[v.Name] = t.Shape
	}
	return in, shapes
}

func medianMs(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
