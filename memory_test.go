package kiln_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/examples"
)

// tinyRepo writes tinycnn as <dir>/<name>/1/model.onnx, as in a model
// repository, and returns its path.
func tinyRepo(t *testing.T, dir, name string, model []byte) string {
	t.Helper()
	path := filepath.Join(dir, name, "1", "model.onnx")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sameOutputs fails unless got and want hold the same tensors (within tol).
func sameOutputs(t *testing.T, what string, got, want map[string]*kiln.Tensor, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d outputs, want %d", what, len(got), len(want))
	}
	for name, w := range want {
		g := got[name]
		if g == nil || g.DType != w.DType || len(g.Shape) != len(w.Shape) {
			t.Fatalf("%s: output %q is %v, want %v %v", what, name, g, w.DType, w.Shape)
		}
		gv, wv := g.Float32s(), w.Float32s()
		if len(gv) != len(wv) {
			t.Fatalf("%s: output %q has %d values, want %d", what, name, len(gv), len(wv))
		}
		for i := range wv {
			if d := math.Abs(float64(gv[i] - wv[i])); d > tol || math.IsNaN(float64(gv[i])) {
				t.Fatalf("%s: output %q[%d] = %v, want %v", what, name, i, gv[i], wv[i])
			}
		}
	}
}

// TestMaxBatchArenaPerShape is issue 9 item 4: a model whose profile allows
// batches of 32768 (max_batch_size: 32768 in config.pbtxt, which the
// server's repository turns into BuildOptions{MaxBatch: 32768}) loads
// through the plan cache as kiln serve loads it, and a batch of 1 runs in
// an arena sized for batch 1, not for 32768. A memory limit below what the
// max batch needs refuses the model at load, with an error naming the
// model, the size needed and the limit; a profile no machine could hold is
// refused with the default limit.
func TestMaxBatchArenaPerShape(t *testing.T) {
	if engine.DefaultMemoryLimit() < 2<<30 { // tinycnn's arena at batch 32768 is 1.25 GiB
		t.Skipf("the builder plans with the default memory limit (%s here), below what tinycnn needs at batch 32768", engine.FormatBytes(engine.DefaultMemoryLimit()))
	}
	dir := t.TempDir()
	model := tinyRepo(t, dir, "tiny", examples.TinyCNNModel)
	ref, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()

	cache := &kiln.PlanCache{Dir: filepath.Join(dir, "cache")}
	m, res, err := cache.Load(context.Background(), model, kiln.BuildOptions{MaxBatch: 32768, NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if p := m.Plan().Profiles; len(p) != 1 || p[0].Inputs[0].Max[0] != 32768 {
		t.Fatalf("profiles %+v, want one with a max batch of 32768", p)
	}
	maxArena := m.Engine().Memory().ArenaBytes
	if maxArena < 32768*8*32*32*4 { // at least the first Conv's output at the max batch
		t.Fatalf("arena at the max batch is %d bytes: too small to be planned at batch 32768", maxArena)
	}

	// the arena of the same model built for batches of at most 1
	one, _, err := cache.Load(context.Background(), model, kiln.BuildOptions{MaxBatch: 1, NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	arena1 := one.Engine().Memory().ArenaBytes

	c := m.NewContext()
	tests := []struct {
		batch     int
		wantArena int // at most
	}{
		{1, arena1},
		{1, arena1},
		{3, 4 * arena1}, // bucket 4
		{2, 4 * arena1}, // the arena does not shrink
		{4, 4 * arena1},
	}
	for _, tt := range tests {
		in := map[string]*kiln.Tensor{"image": examples.TinyCNNInput(tt.batch)}
		got, err := c.Run(context.Background(), in)
		if err != nil {
			t.Fatalf("batch %d: %v", tt.batch, err)
		}
		want, err := ref.Run(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		sameOutputs(t, "batch "+string(rune('0'+tt.batch)), got, want, 1e-5)
		t.Logf("batch %d: arena %d bytes (batch 1 model: %d, max batch: %d)", tt.batch, c.ArenaBytes(), arena1, maxArena)
		if a := c.ArenaBytes(); a == 0 || a > tt.wantArena {
			t.Fatalf("batch %d: the context holds an arena of %d bytes, want at most %d (the max batch's is %d)", tt.batch, a, tt.wantArena, maxArena)
		}
	}

	// refused at load when the limit is below what the max batch needs
	const limit = 64 << 20
	_, err = kiln.LoadWith(res.Path, kiln.LoadOptions{MemoryLimit: limit})
	if !errors.Is(err, engine.ErrMemory) {
		t.Fatalf("load with a limit of 64 MiB: %v, want engine.ErrMemory", err)
	}
	for _, want := range []string{filepath.Base(res.Path), "image 32768x3x32x32", "64.0 MiB", engine.FormatBytes(int64(maxArena))} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// the plan cache does not rebuild a plan that is too large (a rebuild
	// would be as large), it reports the error
	small := &kiln.PlanCache{Dir: cache.Dir, MemoryLimit: limit}
	if _, res, err := small.Load(context.Background(), model, kiln.BuildOptions{MaxBatch: 32768, NoTiming: true}); !errors.Is(err, engine.ErrMemory) || res.Rebuilt != "" {
		t.Fatalf("plan cache with a limit of 64 MiB: %+v, %v; want engine.ErrMemory and no rebuild", res, err)
	}

	// a profile no machine can hold is refused with the default limit
	_, err = kiln.Build(context.Background(), model, kiln.BuildOptions{MaxBatch: 1 << 26, NoTiming: true})
	t.Log(err)
	if !errors.Is(err, engine.ErrMemory) || !strings.Contains(err.Error(), "image 67108864x3x32x32") {
		t.Fatalf("max batch 2^26: %v, want engine.ErrMemory naming the shape", err)
	}
}

// TestBucketPlanningDuringRuns runs an FP16 model (whose float16 adapter
// kernels keep state from shape inference) from several contexts at once
// with batch sizes that each need a new bucket plan: planning, which runs
// the kernels' shape inference, must not overlap their runs (under -race
// this test caught it), and every result equals the same model's run
// alone.
func TestBucketPlanningDuringRuns(t *testing.T) {
	dir := t.TempDir()
	model := tinyRepo(t, dir, "tiny", examples.TinyCNNModel)
	o := kiln.BuildOptions{Precision: "fp16", NoTiming: true, MaxBatch: 64}
	ref, err := kiln.Build(context.Background(), model, o)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	batches := []int{1, 2, 3, 5, 9, 17, 33, 64}
	want := map[int]map[string]*kiln.Tensor{}
	for _, b := range batches {
		if want[b], err = ref.Run(context.Background(), map[string]*kiln.Tensor{"image": examples.TinyCNNInput(b)}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := kiln.Build(context.Background(), model, o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := m.NewContext()
			for i := range batches {
				b := batches[(i+w)%len(batches)]
				got, err := c.Run(context.Background(), map[string]*kiln.Tensor{"image": examples.TinyCNNInput(b)})
				if err != nil {
					t.Error(err)
					return
				}
				g, x := got["probabilities"], want[b]["probabilities"]
				if g.DType != x.DType || string(g.Data) != string(x.Data) {
					t.Errorf("context %d batch %d: outputs differ from the model's run alone", w, b)
					return
				}
			}
		}(w)
	}
	wg.Wait()
}
