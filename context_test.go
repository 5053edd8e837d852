package kiln_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/examples"
)

// TestContexts runs one context per goroutine on a plain model and on a plan
// with two profiles; each context's results equal Model.Run's.
func TestContexts(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	plain, err := kiln.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ps := []engine.Profile{
		{Name: "small", Inputs: []engine.Range{{Input: "image", Min: []int{1, 3, 32, 32}, Opt: []int{1, 3, 32, 32}, Max: []int{2, 3, 32, 32}}}},
		{Name: "large", Inputs: []engine.Range{{Input: "image", Min: []int{3, 3, 32, 32}, Opt: []int{4, 3, 32, 32}, Max: []int{8, 3, 32, 32}}}},
	}
	built, err := kiln.Build(context.Background(), model, kiln.BuildOptions{Profiles: ps, NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	defer built.Close()
	for name, m := range map[string]*kiln.Model{"plain": plain, "plan": built} {
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				c := m.NewContext()
				for _, batch := range []int{1, 2, 5, 8, 2} {
					in := map[string]*kiln.Tensor{"image": examples.TinyCNNInput(batch)}
					got, err := c.Run(context.Background(), in)
					if err != nil {
						t.Errorf("%s: context %d batch %d: %v", name, w, batch, err)
						return
					}
					want, err := m.Run(context.Background(), in)
					if err != nil {
						t.Error(err)
						return
					}
					g, x := got["probabilities"].Float32s(), want["probabilities"].Float32s()
					for i := range x {
						if g[i] != x[i] {
							t.Errorf("%s: context %d batch %d: element %d %v != %v", name, w, batch, i, g[i], x[i])
							return
						}
					}
				}
			}(w)
		}
		wg.Wait()
	}
	if _, err := built.NewContext().Run(context.Background(), map[string]*kiln.Tensor{"image": examples.TinyCNNInput(16)}); err == nil {
		t.Error("a batch outside both profiles ran")
	}
}
