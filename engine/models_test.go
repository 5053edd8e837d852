package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	_ "github.com/kilnai/kiln/ops/all"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// modelsDir holds the shared reference models (one folder each, with
// model.onnx and test_data_set_0/input_N.pb).
const modelsDir = "../../shared/models"

// sharedModels lists the reference models, skipping the test when they are
// missing.
func sharedModels(tb testing.TB) []string {
	tb.Helper()
	ms, _ := filepath.Glob(filepath.Join(modelsDir, "*", "model.onnx"))
	if len(ms) == 0 {
		tb.Skipf("needs the reference models in %s (model.onnx and test_data_set_0 per model)", modelsDir)
	}
	var names []string
	for _, m := range ms {
		names = append(names, filepath.Base(filepath.Dir(m)))
	}
	sort.Strings(names)
	return names
}

// loadModel reads a shared model's graph, optimized at level (0: as is).
func loadModel(tb testing.TB, name string, level int) *ir.Graph {
	tb.Helper()
	f, err := onnx.Load(filepath.Join(modelsDir, name, "model.onnx"))
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

// modelInputs reads test_data_set_0's inputs, named as the engine's inputs
// in order, and returns them with their shapes (the max shapes to plan for).
func modelInputs(tb testing.TB, name string, e *Engine) (map[string]*tensor.Tensor, map[string][]int) {
	tb.Helper()
	in := map[string]*tensor.Tensor{}
	shapes := map[string][]int{}
	for i, v := range e.Inputs() {
		p := filepath.Join(modelsDir, name, "test_data_set_0", fmt.Sprintf("input_%d.pb", i))
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

// TestModelsArenaMatchesNoArena runs every shared model with and without
// the arena (poisoned between runs, unplanned aliases fatal) and requires
// bit-identical outputs: the kernels are the same, only memory differs.
func TestModelsArenaMatchesNoArena(t *testing.T) {
	withStrictAlias(t)
	levels, sizes := []int{0, 3}, []bool{false, true}
	if testing.Short() {
		levels, sizes = []int{3}, []bool{false}
	}
	for _, name := range sharedModels(t) {
		for _, level := range levels {
			for _, bigger := range sizes {
				label := fmt.Sprintf("%s/O%d", name, level)
				if bigger {
					if level == 0 {
						continue
					}
					label += "/max2x"
				}
				t.Run(label, func(t *testing.T) { runArenaVsNoArena(t, name, level, bigger) })
			}
		}
	}
}

// runArenaVsNoArena compares one model's outputs with and without arena;
// with bigger, memory is planned for inputs twice as large in every
// dynamic dimension as those it runs with.
func runArenaVsNoArena(t *testing.T, name string, level int, bigger bool) {
	ref, err := New(loadModel(t, name, level))
	if err != nil {
		t.Fatal(err)
	}
	in, shapes := modelInputs(t, name, ref)
	if bigger {
		for _, v := range ref.Inputs() {
			s := append([]int(nil), shapes[v.Name]...)
			for d, dim := range v.Type.Shape {
				if !dim.Known() {
					s[d] *= 2
				}
			}
			shapes[v.Name] = s
		}
	}
	e, err := NewWithOptions(loadModel(t, name, level), Options{MaxShapes: shapes})
	if err != nil {
		t.Fatal(err)
	}
	m := e.Memory()
	if m.ArenaBytes == 0 || m.ArenaBytes >= m.IntermediateBytes {
		t.Fatalf("memory %+v: want an arena smaller than the intermediates", m)
	}
	t.Logf("arena %d bytes (at least %d live at once) for %d bytes of intermediates (%d of %d values in the arena)", m.ArenaBytes, e.mem.peakLive, m.IntermediateBytes, m.InArena, m.Values)
	if m.ArenaBytes < e.mem.peakLive || m.ArenaBytes > e.mem.peakLive*3/2 {
		t.Fatalf("arena of %d bytes for a peak of %d live: want at most 1.5x the peak", m.ArenaBytes, e.mem.peakLive)
	}
	want, err := ref.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	c := e.NewContext()
	for run := 0; run < 2; run++ {
		if run > 0 {
			poison(c)
		}
		got, err := c.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range e.Outputs() {
			if c.inArena(got[v.Name]) {
				t.Fatalf("output %q points into the arena", v.Name)
			}
			equal(t, fmt.Sprintf("run %d output %q", run, v.Name), got[v.Name], want[v.Name])
		}
	}
}
