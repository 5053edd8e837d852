package kiln_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
)

// TestPlanCache builds on the first load, loads the cached plan on the
// second (a restart), and rebuilds for other options or a damaged plan.
func TestPlanCache(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny", "1", "model.onnx")
	if err := os.MkdirAll(filepath.Dir(model), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &kiln.PlanCache{Dir: filepath.Join(dir, "cache")}
	load := func(o kiln.BuildOptions) kiln.CacheResult {
		t.Helper()
		m, res, err := c.Load(context.Background(), model, o)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		in, want, err := examples.TinyCNNTestData()
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.Run(context.Background(), map[string]*kiln.Tensor{"image": in})
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range want.Float32s() {
			if d := out["probabilities"].Float32s()[i] - w; d > 1e-5 || d < -1e-5 {
				t.Fatalf("output %d off by %g", i, d)
			}
		}
		return res
	}
	first := load(kiln.BuildOptions{MaxBatch: 8})
	if first.Hit || filepath.Base(filepath.Dir(first.Path)) != "cache" {
		t.Fatalf("first load: %+v", first)
	}
	st, err := os.Stat(first.Path)
	if err != nil {
		t.Fatal(err)
	}
	second := load(kiln.BuildOptions{MaxBatch: 8})
	if !second.Hit || second.Path != first.Path {
		t.Fatalf("second load did not use the cached plan: %+v", second)
	}
	if st2, _ := os.Stat(first.Path); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("the cached plan was rewritten")
	}
	other := load(kiln.BuildOptions{MaxBatch: 16})
	if other.Hit || other.Path == first.Path {
		t.Fatalf("other options reused the plan: %+v", other)
	}
	if err := os.WriteFile(first.Path, []byte("KILNPLAN garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	again := load(kiln.BuildOptions{MaxBatch: 8})
	if again.Hit || again.Rebuilt == "" {
		t.Fatalf("a damaged cached plan was not rebuilt: %+v", again)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "timing-cache.json")); err != nil {
		t.Errorf("no shared timing cache: %v", err)
	}
}
