package kiln_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
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

// otherTinyCNN returns tinycnn with another classifier bias: the same
// inputs and outputs, other results.
func otherTinyCNN(t *testing.T) []byte {
	t.Helper()
	g := examples.TinyCNN()
	found := false
	for _, v := range g.Initializers {
		if v.Name == "fc.bias" {
			b := tensor.New(tensor.Float32, v.Const.Shape...)
			for i := range b.Float32s() {
				b.Float32s()[i] = float32(i) // far from tinycnn's
			}
			v.Const, found = b, true
		}
	}
	if !found {
		t.Fatal("tinycnn has no fc.bias")
	}
	mp, err := onnx.FromGraph(g, "test")
	if err != nil {
		t.Fatal(err)
	}
	return mp.Marshal()
}

// TestPlanCacheSwappedPlans is issue 9 item 7: two models built into one
// cache, their plan files swapped (file names unchanged): loading either
// model does not serve the other's plan; the plan's build key does not
// match, the plan is rebuilt (CacheResult.Rebuilt says why) and the
// outputs are the model's own. The next load is a hit again.
func TestPlanCacheSwappedPlans(t *testing.T) {
	dir := t.TempDir()
	models := map[string][]byte{"a": examples.TinyCNNModel, "b": otherTinyCNN(t)}
	in := map[string]*kiln.Tensor{"image": examples.TinyCNNInput(2)}
	paths, plans, want := map[string]string{}, map[string]string{}, map[string]map[string]*kiln.Tensor{}
	c := &kiln.PlanCache{Dir: filepath.Join(dir, "cache")}
	o := kiln.BuildOptions{MaxBatch: 4, NoTiming: true}
	for name, b := range models {
		paths[name] = tinyRepo(t, dir, name, b)
		ref, err := kiln.LoadBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		if want[name], err = ref.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		ref.Close()
		m, res, err := c.Load(context.Background(), paths[name], o)
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		if res.Hit {
			t.Fatalf("%s: first load was a hit", name)
		}
		plans[name] = res.Path
	}
	if d := want["a"]["probabilities"].Float32s()[0] - want["b"]["probabilities"].Float32s()[0]; d < 1e-3 && d > -1e-3 {
		t.Fatal("the two models give the same outputs: the test could not tell them apart")
	}
	// swap the plan files: a's name now holds b's plan and the reverse
	tmp := filepath.Join(dir, "swap")
	for _, mv := range [][2]string{{plans["a"], tmp}, {plans["b"], plans["a"]}, {tmp, plans["b"]}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"a", "b"} {
		for i, wantHit := range []bool{false, true} {
			m, res, err := c.Load(context.Background(), paths[name], o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Run(context.Background(), in)
			m.Close()
			if err != nil {
				t.Fatal(err)
			}
			sameOutputs(t, name, got, want[name], 1e-5)
			if res.Hit != wantHit || res.Path != plans[name] {
				t.Fatalf("%s load %d: %+v, want hit %v at %s", name, i, res, wantHit, plans[name])
			}
			if !wantHit && !strings.Contains(res.Rebuilt, "built from another model or other options") {
				t.Fatalf("%s: rebuilt for %q, want the build key mismatch", name, res.Rebuilt)
			}
		}
	}
	// a plan built elsewhere (as kiln build writes it: no build key), even
	// of the right model, copied into the cache under the right name is not
	// trusted either
	r, err := build.Build(context.Background(), paths["a"], o)
	if err != nil {
		t.Fatal(err)
	}
	err = r.WriteFile(plans["a"])
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, res, err := c.Load(context.Background(), paths["a"], o)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if res.Hit || !strings.Contains(res.Rebuilt, "build key none") {
		t.Fatalf("a plan without a build key was used: %+v", res)
	}
}

// tinyCNNExternal returns tinycnn with its classifier bias stored in the
// external data file weights.bin (returned with it, holding bias).
func tinyCNNExternal(t *testing.T, bias []float32) (model, weights []byte) {
	t.Helper()
	mp, err := onnx.FromGraph(examples.TinyCNN(), "test")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tp := range mp.Graph.Initializer {
		if tp.Name != "fc.bias" {
			continue
		}
		w := tensor.FromFloat32(bias, len(bias))
		tp.RawData, tp.FloatData = nil, nil
		tp.DataLocation = onnx.DataLocationExternal
		tp.ExternalData = []*onnx.StringStringEntryProto{
			{Key: "location", Value: "weights.bin"}, {Key: "offset", Value: "0"}, {Key: "length", Value: strconv.Itoa(len(w.Data))},
		}
		weights, found = w.Data, true
	}
	if !found {
		t.Fatal("tinycnn has no fc.bias")
	}
	return mp.Marshal(), weights
}

// TestPlanCacheKeyFollowsExternalData: the plan cache key covers the
// external data files the model names, not only model.onnx: new weights
// beside an unchanged model.onnx are a miss and the new plan computes with
// them (issue 9 item 7: a cached plan is never served for other inputs
// than it was built from).
func TestPlanCacheKeyFollowsExternalData(t *testing.T) {
	dir := t.TempDir()
	in := map[string]*kiln.Tensor{"image": examples.TinyCNNInput(2)}
	c := &kiln.PlanCache{Dir: filepath.Join(dir, "cache")}
	o := kiln.BuildOptions{MaxBatch: 4, NoTiming: true}
	var path string
	var plans []string
	for i, bias := range [][]float32{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		{9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
	} {
		model, weights := tinyCNNExternal(t, bias)
		if i == 0 {
			path = tinyRepo(t, dir, "ext", model)
		}
		// only the external file changes, in place
		if err := os.WriteFile(filepath.Join(filepath.Dir(path), "weights.bin"), weights, 0o644); err != nil {
			t.Fatal(err)
		}
		ref, err := kiln.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Run(context.Background(), in)
		ref.Close()
		if err != nil {
			t.Fatal(err)
		}
		for j, wantHit := range []bool{false, true} {
			m, res, err := c.Load(context.Background(), path, o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Run(context.Background(), in)
			m.Close()
			if err != nil {
				t.Fatal(err)
			}
			sameOutputs(t, "weights "+strconv.Itoa(i), got, want, 1e-5)
			if res.Hit != wantHit {
				t.Fatalf("weights %d load %d: %+v, want hit %v", i, j, res, wantHit)
			}
			if j == 0 {
				plans = append(plans, res.Path)
			}
		}
	}
	if plans[0] == plans[1] {
		t.Fatalf("new external weights kept the plan's key: %s", plans[0])
	}
}

// TestPlanCacheCorruptTimingCache: a damaged timing cache in the plan
// cache's folder (a disk full, a crash, a hand edit) is started anew; the
// model still builds and the cache is written again.
func TestPlanCacheCorruptTimingCache(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	os.MkdirAll(cache, 0o755)
	timing := filepath.Join(cache, "timing-cache.json")
	for _, damaged := range []string{`{"format": "kiln-timing-cache", "vers`, "not json at all", `{"format":"kiln-timing-cache","version":999,"entries":[]}`} {
		if err := os.WriteFile(timing, []byte(damaged), 0o644); err != nil {
			t.Fatal(err)
		}
		c := &kiln.PlanCache{Dir: cache}
		m, _, err := c.Load(context.Background(), model, kiln.BuildOptions{})
		if err != nil {
			t.Fatalf("timing cache %q: %v", damaged, err)
		}
		m.Close()
		if _, err := tactic.Open(timing); err != nil {
			t.Errorf("timing cache %q not rewritten: %v", damaged, err)
		}
		// the next model of the same key must build again: remove the plans
		plans, _ := filepath.Glob(filepath.Join(cache, "*.plan"))
		for _, p := range plans {
			os.Remove(p)
		}
	}
}

// TestPlanCacheNames: a cached plan is named after the model file (NAME.onnx)
// or, for a model.onnx, after its folder, a numeric version folder skipped:
// a repository's <model>/<version>/model.onnx and a model's own folder
// <model>/model.onnx both give <model> (before, the second was named after
// the folder above the model's: "models" for models/resnet_mini/model.onnx).
func TestPlanCacheNames(t *testing.T) {
	dir := t.TempDir()
	o := kiln.BuildOptions{MaxBatch: 2, NoTiming: true}
	for _, tc := range []struct {
		name, model, chdir, want string // model: under dir; chdir: the current folder under dir, model then relative to it
	}{
		{"repository layout", "repo/tiny/1/model.onnx", "", "tiny"},
		{"the model's own folder", "models/resnet_mini/model.onnx", "", "resnet_mini"},
		{"a named file", "models/mine/my-net.onnx", "", "my-net"},
		{"a named file in a version folder", "repo/tiny/2/net.onnx", "", "net"},
		{"a folder that is no version", "zoo/tiny/v2/model.onnx", "", "v2"},
		{"relative, in its folder", "work/yolo/model.onnx", "work/yolo", "yolo"},
		{"relative, repository layout", "repo2/det/3/model.onnx", "repo2", "det"},
		{"odd characters", "models/my net+1/model.onnx", "", "my_net_1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			model := filepath.Join(dir, tc.model)
			if err := os.MkdirAll(filepath.Dir(model), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
				t.Fatal(err)
			}
			path := model
			if tc.chdir != "" {
				t.Chdir(filepath.Join(dir, tc.chdir))
				if path, _ = filepath.Rel(filepath.Join(dir, tc.chdir), model); !strings.Contains(tc.model, path) {
					t.Fatalf("relative path %q", path)
				}
			}
			// a cache of its own: the same model and options elsewhere
			// have the same key, and a plan of the old name would be found
			c := &kiln.PlanCache{Dir: t.TempDir()}
			m, res, err := c.Load(context.Background(), path, o)
			if err != nil {
				t.Fatal(err)
			}
			m.Close()
			base := filepath.Base(res.Path)
			i := strings.LastIndexByte(base, '-')
			if got := base[:max(i, 0)]; got != tc.want || filepath.Ext(base) != ".plan" {
				t.Errorf("cached plan %s, want %s-KEY.plan", base, tc.want)
			}
		})
	}
}

// TestPlanCacheLegacyNames: a cache written by a kiln that named a
// models/<model>/model.onnx plan after "models" is still found (the same
// key, the same checks of the plan's header); a plan under the old name
// that is damaged or has another build key is rebuilt under the new name,
// without an error.
func TestPlanCacheLegacyNames(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "models", "tiny", "model.onnx")
	if err := os.MkdirAll(filepath.Dir(model), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	o := kiln.BuildOptions{MaxBatch: 2, NoTiming: true}
	in := map[string]*kiln.Tensor{"image": examples.TinyCNNInput(2)}
	ref, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Run(context.Background(), in)
	ref.Close()
	if err != nil {
		t.Fatal(err)
	}
	// the key, from a cache of the new names
	m, res, err := (&kiln.PlanCache{Dir: filepath.Join(dir, "new")}).Load(context.Background(), model, o)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	key := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(res.Path), "tiny-"), ".plan")
	if len(key) != 24 {
		t.Fatalf("cached plan %s: no tiny-KEY.plan", res.Path)
	}
	// writeOld writes a cache of the old names: the plan as an earlier
	// kiln's PlanCache wrote it (under models-KEY.plan, that build key in
	// its header), or the given bytes
	writeOld := func(t *testing.T, buildKey string, garbage []byte) (cache, old string) {
		cache = t.TempDir()
		old = filepath.Join(cache, "models-"+key+".plan")
		if garbage != nil {
			if err := os.WriteFile(old, garbage, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		r, err := build.Build(context.Background(), model, o)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		r.Header.BuildKey = buildKey
		if err := r.WriteFile(old); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, tc := range []struct {
		name     string
		buildKey string
		garbage  []byte
		hit      bool
	}{
		{"found", "models-" + key, nil, true},
		{"another build key", "models-ffffffffffffffffffffffff", nil, false},
		{"damaged", "", []byte("KILNPLAN garbage"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache, old := writeOld(t, tc.buildKey, tc.garbage)
			c := &kiln.PlanCache{Dir: cache}
			for round := range 2 { // the second: what the first left
				m, res, err := c.Load(context.Background(), model, o)
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				out, err := m.Run(context.Background(), in)
				m.Close()
				if err != nil {
					t.Fatal(err)
				}
				for i, w := range want["probabilities"].Float32s() {
					if d := out["probabilities"].Float32s()[i] - w; d > 1e-5 || d < -1e-5 {
						t.Fatalf("round %d: output %d off by %g", round, i, d)
					}
				}
				wantPath, wantHit := filepath.Join(cache, "tiny-"+key+".plan"), round == 1
				if tc.hit {
					wantPath, wantHit = old, true
				}
				if res.Path != wantPath || res.Hit != wantHit {
					t.Errorf("round %d: %+v, want path %s, hit %v", round, res, wantPath, wantHit)
				}
			}
		})
	}
}
