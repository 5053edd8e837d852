package gpuexec

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
)

// TestTacticsBlob round-trips the plan blob and refuses damaged ones.
func TestTacticsBlob(t *testing.T) {
	want := Tactics{
		"conv1": {Sig: "cuda conv x=1", Impl: ImplCUDNN, Algo: 1, Math: 3, NS: 1500},
		"fc":    {Sig: "cuda gemm m=1", Impl: ImplCUBLASLt, Algo: 2, Epi: true, NS: 900},
		"conv2": {Sig: "cuda conv x=2", Impl: ImplKernel, NS: 10},
	}
	got, err := ParseTactics(want.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip: %v, want %v", got, want)
	}
	if got, err := ParseTactics(Tactics(nil).Marshal()); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty: %v, %v", got, err)
	}
	for _, tt := range []struct{ name, blob string }{
		{"not JSON", "{"},
		{"other format", `{"format":"x","version":1,"layers":{}}`},
		{"other version", `{"format":"kiln-cuda-tactics","version":2,"layers":{}}`},
		{"unknown implementation", `{"format":"kiln-cuda-tactics","version":1,"layers":{"a":{"sig":"s","impl":"tensorrt"}}}`},
		{"no signature", `{"format":"kiln-cuda-tactics","version":1,"layers":{"a":{"impl":"kernel"}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseTactics([]byte(tt.blob)); !errors.Is(err, ErrGraph) {
				t.Fatalf("error %v, want ErrGraph", err)
			}
		})
	}
}

// TestTuneFake tunes resnet_mini against the fake libraries (whose events
// always measure 1.5 ms): every candidate of each layer signature is timed
// once and stored in the timing cache, ties keep the libraries' first choice, a second engine
// reads every time from the cache, times in the cache decide the choice
// unless the whole network is slower with them, and recorded tactics are
// applied without timing.
func TestTuneFake(t *testing.T) {
	dir := fakeLibs(t)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 1, 1)
	g := optimizedGraph(t, path, in)
	fp := device.Fingerprint{"gpu": "fake"}

	base, _ := fakeEngine(t, dir, g, Options{LibDir: dir})
	// Layers of the same signature share their measurements.
	var convs, gemms, cands int
	sigs := map[string]bool{}
	for i, s := range base.prog.steps {
		if c := base.convs[i]; c != nil {
			convs++
			if sig := convSig(s, false); !sigs[sig] {
				sigs[sig] = true
				cands += len(c.Candidates) + 1
			}
		}
		if m := base.gemms[i]; m != nil {
			gemms++
			if sig := gemmSig(s, false); !sigs[sig] {
				sigs[sig] = true
				cands += len(m.Candidates) + 1
				if base.gemmEpi[i] { // and the plain plan's, as many with the fake
					cands += len(m.Candidates)
				}
			}
		}
	}
	if convs == 0 || gemms == 0 {
		t.Fatalf("resnet_mini planned %d convolutions and %d products with the libraries, want some of each", convs, gemms)
	}

	cache := tactic.New()
	e, c := fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, TimingCache: cache, CacheDevice: fp})
	if e.Measured() != cands || cache.Len() != cands {
		t.Fatalf("measured %d, cache holds %d, want %d candidates", e.Measured(), cache.Len(), cands)
	}
	tuned := e.Tactics()
	if len(tuned) != convs+gemms {
		t.Fatalf("%d tactics, want %d", len(tuned), convs+gemms)
	}
	for i, s := range e.prog.steps {
		tt, ok := tuned[s.node.Name]
		switch {
		case base.convs[i] != nil:
			if !ok || tt.Impl != ImplCUDNN || tt.Algo != base.convs[i].Algo || tt.NS != int64(1500*time.Microsecond) {
				t.Errorf("%s: tactic %+v, want cuDNN's first algorithm %d at 1.5 ms", s.name(), tt, base.convs[i].Algo)
			}
			if d, ok := cache.Lookup(fp, convSig(s, false), "kernel"); !ok || d != 1500*time.Microsecond {
				t.Errorf("%s: kernel time in the cache %v, %v", s.name(), d, ok)
			}
		case base.gemms[i] != nil:
			if !ok || tt.Impl != ImplCUBLASLt || tt.Algo != 0 || tt.Epi != base.gemmEpi[i] {
				t.Errorf("%s: tactic %+v, want cuBLASLt's first result", s.name(), tt)
			}
		}
	}
	if e.ws != base.ws {
		t.Errorf("workspace %d after tuning, want %d (the chosen algorithms')", e.ws, base.ws)
	}
	if _, err := c.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	// Second engine: every time from the cache.
	e2, _ := fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, TimingCache: cache, CacheDevice: fp})
	if e2.Measured() != 0 || !reflect.DeepEqual(e2.Tactics(), tuned) {
		t.Fatalf("second engine measured %d, tactics equal %v", e2.Measured(), reflect.DeepEqual(e2.Tactics(), tuned))
	}

	// Make kiln's kernel fastest for the first convolution and cuBLASLt's
	// last result fastest for the first product.
	var convName, gemmName string
	var lastLt int
	for i, s := range e.prog.steps {
		if base.convs[i] != nil && convName == "" {
			convName = s.node.Name
			cache.Store(fp, convSig(s, false), "kernel", time.Microsecond)
		}
		if base.gemms[i] != nil && gemmName == "" {
			gemmName = s.node.Name
			lastLt = len(base.gemms[i].Candidates) - 1
			cache.Store(fp, gemmSig(s, false), Tactic{Impl: ImplCUBLASLt, Algo: lastLt, Epi: base.gemmEpi[i]}.name(), time.Microsecond)
		}
	}
	e3, c3 := fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, TimingCache: cache, CacheDevice: fp})
	picked := e3.Tactics()
	if e3.Measured() != 0 || picked[convName].Impl != ImplKernel || picked[gemmName].Algo != lastLt || picked[gemmName].NS != 1000 {
		t.Fatalf("measured %d; %s: %+v; %s: %+v", e3.Measured(), convName, picked[convName], gemmName, picked[gemmName])
	}
	checkLayers := func(e *Engine) {
		t.Helper()
		for i, l := range e.Layers() {
			s := e.prog.steps[i]
			if s.node.Name == convName && (e.convs[i] != nil || !strings.HasPrefix(l.Impl, "conv")) {
				t.Errorf("%s runs %q, want kiln's kernel", convName, l.Impl)
			}
			if s.node.Name == gemmName && (e.gemms[i] == nil || e.gemms[i].Workspace != e.gemms[i].Candidates[lastLt].Workspace) {
				t.Errorf("%s: not cuBLASLt's result %d", gemmName, lastLt)
			}
		}
	}
	checkLayers(e3)
	if _, err := c3.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	// The choices, applied without timing; a choice for another signature
	// is ignored.
	e4, c4 := fakeEngine(t, dir, g, Options{LibDir: dir, Tactics: picked})
	if e4.Measured() != 0 || !reflect.DeepEqual(e4.Tactics(), picked) {
		t.Fatalf("applied: measured %d, tactics %v, want %v", e4.Measured(), e4.Tactics(), picked)
	}
	checkLayers(e4)
	if _, err := c4.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// Times measured later shorter: the whole network replays faster with
	// the libraries' first choices than with the cache's, which are dropped.
	t.Setenv("KILN_FAKE_EVENT_SHRINK", "1")
	e6, c6 := fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, TimingCache: cache, CacheDevice: fp})
	if !e6.reverted || e6.Measured() != 0 || !reflect.DeepEqual(e6.Tactics(), tuned) || len(e6.convs) != len(base.convs) || len(e6.gemms) != len(base.gemms) {
		t.Fatalf("network slower with the tuned choices: reverted %v, measured %d, first choices %v, %d convolutions on cuDNN",
			e6.reverted, e6.Measured(), reflect.DeepEqual(e6.Tactics(), tuned), len(e6.convs))
	}
	if _, err := c6.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if e3.reverted {
		t.Error("equal network times: the tuned choices were dropped")
	}
	other := Tactics{}
	for k, v := range picked {
		v.Sig += " other"
		other[k] = v
	}
	e5, _ := fakeEngine(t, dir, g, Options{LibDir: dir, Tactics: other})
	if len(e5.Tactics()) != 0 || len(e5.convs) != len(base.convs) {
		t.Fatalf("tactics of other signatures applied: %v", e5.Tactics())
	}
}

// TestCompilePlanTuneFake compiles a plan with Tune and a timing cache
// file: the choices go into the layer report (each layer's Choice and Sig,
// which the builder keeps in the plan's header; no "cuda.tactics"
// section) and the cache file, a second build measures nothing, and
// loading the plan with the header's choices (ExecOptions.Tactics), or an
// older plan's "cuda.tactics" section, applies them without timing.
func TestCompilePlanTuneFake(t *testing.T) {
	dir := fakeLibs(t)
	t.Setenv(cuda.EnvLibPath, dir)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 1, 1)
	g := optimizedGraph(t, path, in)
	cachePath := filepath.Join(t.TempDir(), "timing.json")
	compileRun := func(o device.ExecOptions) *planProgram {
		t.Helper()
		prog, err := compilePlan(g, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { prog.Close() })
		if _, err := prog.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		return prog.(*planProgram)
	}
	choices := func(p *planProgram) []device.Tactic { return programChoices(t, p) }
	first := compileRun(device.ExecOptions{Tune: true, TimingCache: cachePath})
	tuned := choices(first)
	if _, ok := first.Blobs()[tacticsBlob]; ok || len(tuned) == 0 || first.measured == 0 {
		t.Fatalf("choices %v, a %s section %v (measured %d)", tuned, tacticsBlob, ok, first.measured)
	}
	cache, err := tactic.Open(cachePath)
	if err != nil || cache.Len() != first.measured {
		t.Fatalf("timing cache: %d entries, %v; want %d", cache.Len(), err, first.measured)
	}
	second := compileRun(device.ExecOptions{Tune: true, TimingCache: cachePath})
	if second.measured != 0 || !reflect.DeepEqual(choices(second), tuned) {
		t.Fatalf("second build measured %d; same choices %v", second.measured, reflect.DeepEqual(choices(second), tuned))
	}
	loaded := compileRun(device.ExecOptions{Blobs: first.Blobs(), Tactics: tuned, Tune: true})
	if loaded.measured != 0 || !reflect.DeepEqual(choices(loaded), tuned) {
		t.Fatalf("load measured %d; choices kept %v", loaded.measured, reflect.DeepEqual(choices(loaded), tuned))
	}
	// An older plan: the choices in its "cuda.tactics" section.
	oldSection := Tactics{}
	for _, dt := range tuned {
		tt, err := ParseTactic(dt.Tactic)
		if err != nil {
			t.Fatal(err)
		}
		tt.Sig = dt.Sig
		oldSection[dt.Layer] = tt
	}
	old := compileRun(device.ExecOptions{Blobs: map[string][]byte{tacticsBlob: oldSection.Marshal()}, Tune: true})
	if old.measured != 0 || !reflect.DeepEqual(choices(old), tuned) {
		t.Fatalf("older plan's load measured %d; choices kept %v", old.measured, reflect.DeepEqual(choices(old), tuned))
	}
	plain := compileRun(device.ExecOptions{})
	if c := choices(plain); len(c) != 0 || plain.measured != 0 {
		t.Fatalf("untuned build: choices %v, %d measurements", c, plain.measured)
	}
	for _, bad := range [][]device.Tactic{
		{{Layer: tuned[0].Layer, Tactic: "cudnn:algo=x", Sig: tuned[0].Sig}},
		{{Layer: tuned[0].Layer, Tactic: tuned[0].Tactic}},
	} {
		if _, err := compilePlan(g, device.ExecOptions{Tactics: bad}); !errors.Is(err, ErrGraph) || !strings.Contains(err.Error(), tuned[0].Layer) {
			t.Errorf("damaged choice %+v: %v, want ErrGraph naming the layer", bad, err)
		}
	}
	bad := map[string][]byte{tacticsBlob: []byte("{")}
	if _, err := compilePlan(g, device.ExecOptions{Blobs: bad}); !errors.Is(err, ErrGraph) {
		t.Fatalf("damaged blob: %v, want ErrGraph", err)
	}
	if err := os.WriteFile(cachePath, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := compilePlan(g, device.ExecOptions{Tune: true, TimingCache: cachePath}); !errors.Is(err, tactic.ErrCorrupt) {
		t.Fatalf("damaged timing cache: %v, want tactic.ErrCorrupt", err)
	}
}

// programChoices reads what a compiled plan's layer report says it chose,
// as the plan's header keeps it and a load hands it back
// (device.ExecOptions.Tactics).
func programChoices(t testing.TB, p *planProgram) []device.Tactic {
	t.Helper()
	r, err := device.ParseLayerReport(p.Blobs()[device.LayersBlob])
	if err != nil {
		t.Fatal(err)
	}
	var out []device.Tactic
	for _, l := range r.Layers {
		if l.Choice != "" {
			out = append(out, device.Tactic{Layer: l.Name, Tactic: l.Choice, Sig: l.Sig})
		}
	}
	return out
}

// TestStepTimer: the GPU's tactic.Timer of one step applies each
// candidate to time, screens it (one run without a graph) once a faster
// one before it is known (from the cache or timed), keeps the screen time
// of one far slower (screenFactor times the best plus screenMargin)
// without timing it further, and skips with the reason one that fails to
// apply or to run. Times are fakes: no GPU or library is used.
func TestStepTimer(t *testing.T) {
	const us = time.Microsecond
	broken := errors.New("not supported")
	type res struct {
		d   time.Duration
		err bool
	}
	for _, tc := range []struct {
		name     string
		measure  []time.Duration // per candidate, its timed (graph) time; -1: fails
		screen   []time.Duration // per candidate, its screen run; -1: fails
		applyErr []bool
		known    []time.Duration
		todo     []int
		want     []res
		timed    []int // the candidates measure ran for
	}{
		{
			name:    "first timed without a screen, a close one timed, a slow one screened out",
			measure: []time.Duration{100 * us, 90 * us, 1000 * us},
			screen:  []time.Duration{0, 120 * us, 500 * us},
			known:   make([]time.Duration, 3),
			todo:    []int{0, 1, 2},
			want:    []res{{d: 100 * us}, {d: 90 * us}, {d: 500 * us}},
			timed:   []int{0, 1},
		},
		{
			name:    "the screen's bound is the fastest so far: 4x90us+50us",
			measure: []time.Duration{100 * us, 90 * us, 400 * us, 400 * us},
			screen:  []time.Duration{0, 0, 411 * us, 410 * us},
			known:   make([]time.Duration, 4),
			todo:    []int{0, 1, 2, 3},
			want:    []res{{d: 100 * us}, {d: 90 * us}, {d: 411 * us}, {d: 400 * us}},
			timed:   []int{0, 1, 3},
		},
		{
			name:    "a cached candidate before it bounds the screen",
			measure: []time.Duration{0, 900 * us},
			screen:  []time.Duration{0, 800 * us},
			known:   []time.Duration{10 * us, 0},
			todo:    []int{1},
			want:    []res{{d: 800 * us}},
		},
		{
			name:    "a cached candidate after it does not",
			measure: []time.Duration{900 * us, 0},
			screen:  []time.Duration{800 * us, 0},
			known:   []time.Duration{0, 10 * us},
			todo:    []int{0},
			want:    []res{{d: 900 * us}},
			timed:   []int{0},
		},
		{
			name:     "failures are skipped and bound nothing",
			measure:  []time.Duration{1 * us, -1, 900 * us, 900 * us, 20 * us, -1},
			screen:   []time.Duration{0, 0, 0, -1, 0, 0},
			applyErr: []bool{true},
			known:    make([]time.Duration, 6),
			todo:     []int{0, 1, 2, 3, 4, 5},
			want:     []res{{err: true}, {err: true}, {d: 900 * us}, {err: true}, {d: 20 * us}, {err: true}},
			timed:    []int{2, 4},
		},
		{
			name:    "a screened-out candidate bounds nothing",
			measure: []time.Duration{10 * us, 900 * us, 80 * us},
			screen:  []time.Duration{0, 700 * us, 85 * us},
			known:   make([]time.Duration, 3),
			todo:    []int{0, 1, 2},
			want:    []res{{d: 10 * us}, {d: 700 * us}, {d: 80 * us}},
			timed:   []int{0, 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := -1
			var timed []int
			cands := make([]candidate, len(tc.measure))
			for j := range cands {
				cands[j].apply = func() error {
					if j < len(tc.applyErr) && tc.applyErr[j] {
						return broken
					}
					cur = j
					return nil
				}
			}
			st := &stepTimer{cands: cands, step: 7,
				screen: func(step int) (time.Duration, error) {
					if step != 7 {
						t.Fatalf("screened step %d", step)
					}
					if tc.screen[cur] < 0 {
						return 0, broken
					}
					return tc.screen[cur], nil
				},
				measure: func(steps ...int) (time.Duration, error) {
					if len(steps) != 1 || steps[0] != 7 {
						t.Fatalf("measured steps %v", steps)
					}
					if tc.measure[cur] < 0 {
						return 0, broken
					}
					timed = append(timed, cur)
					return tc.measure[cur], nil
				}}
			got, err := st.Time(context.Background(), tc.todo, tc.known)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d results, want %d", len(got), len(tc.want))
			}
			for k, w := range tc.want {
				if (got[k].Err != nil) != w.err || (!w.err && got[k].Time != w.d) || (w.err && !errors.Is(got[k].Err, broken)) {
					t.Errorf("candidate %d: %v, %v; want %v (failing: %v)", tc.todo[k], got[k].Time, got[k].Err, w.d, w.err)
				}
			}
			if !reflect.DeepEqual(timed, tc.timed) {
				t.Errorf("timed %v, want %v", timed, tc.timed)
			}
			for _, j := range tc.todo {
				if !st.timed[j] {
					t.Errorf("candidate %d not recorded as timed", j)
				}
			}
		})
	}
}

// refChooseStep is tune's choice of one step before it went through
// tactic.Choose (the loop as it was), kept as the reference that
// TestChooseStepSameChoices compares chooseStep with.
func refChooseStep(cands []candidate, i int, sig string, cache *tactic.Cache, fp device.Fingerprint, screen func(int) (time.Duration, error), measure func(...int) (time.Duration, error)) (best, measured int, ok bool) {
	best = -1
	for j := range cands {
		t := &cands[j].t
		if cache != nil {
			if d, ok := cache.Lookup(fp, sig, t.name()); ok {
				t.NS = int64(d)
				cands[j].cached = true
			}
		}
		if t.NS == 0 {
			if err := cands[j].apply(); err != nil {
				continue
			}
			if best >= 0 {
				q, err := screen(i)
				if err != nil {
					continue
				}
				if q > screenFactor*time.Duration(cands[best].t.NS)+screenMargin {
					measured++
					t.NS = int64(q)
					if cache != nil {
						cache.Store(fp, sig, t.name(), q)
					}
					continue
				}
			}
			dur, err := measure(i)
			if err != nil {
				continue
			}
			measured++
			t.NS = int64(dur)
			if cache != nil {
				cache.Store(fp, sig, t.name(), dur)
			}
		}
		if best < 0 || t.NS < cands[best].t.NS {
			best = j
		}
	}
	return best, measured, best >= 0
}

// TestChooseStepSameChoices: on the same timings (fake, deterministic per
// candidate: times with ties, screen runs far slower or not, candidates
// that fail to apply, screen or run, times in the timing cache or not, no
// cache at all), the tuner's choice through tactic.Choose is the one its
// own loop made before: the same candidate, the same times and cache
// flags, the same count measured, the same timing cache afterwards.
func TestChooseStepSameChoices(t *testing.T) {
	const us = time.Microsecond
	fp := device.Fingerprint{"gpu": "fake"}
	const sig = "cuda gemm m=1"
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 3000 {
		n := 1 + r.IntN(6)
		measureT := make([]time.Duration, n) // -1: fails
		screenT := make([]time.Duration, n)
		applyErr := make([]bool, n)
		for j := range n {
			measureT[j] = time.Duration(1+r.IntN(8)) * 10 * us
			if r.IntN(7) == 0 {
				measureT[j] = -1
			}
			screenT[j] = measureT[j] + time.Duration(r.IntN(3))*us
			if r.IntN(4) == 0 { // a grouped convolution's thousands of launches
				screenT[j] = time.Duration(100+r.IntN(900)) * us
			}
			if r.IntN(9) == 0 {
				screenT[j] = -1
			}
			applyErr[j] = r.IntN(8) == 0
		}
		var cached map[int]time.Duration
		if r.IntN(4) != 0 {
			cached = map[int]time.Duration{}
			for j := range n {
				if r.IntN(3) == 0 {
					cached[j] = time.Duration(1+r.IntN(8)) * 10 * us
				}
			}
		}
		run := func(choose func([]candidate, *tactic.Cache, func(int) (time.Duration, error), func(...int) (time.Duration, error)) (int, int, bool)) (best, measured int, ok bool, cands []candidate, cache *tactic.Cache, applied []int) {
			cur := -1
			cands = make([]candidate, n)
			for j := range n {
				cands[j].t = Tactic{Sig: sig, Impl: ImplCUBLASLt, Algo: j}
				cands[j].apply = func() error {
					if applyErr[j] {
						return errors.New("apply")
					}
					cur = j
					applied = append(applied, j)
					return nil
				}
			}
			if cached != nil {
				cache = tactic.New()
				for j, d := range cached {
					cache.Store(fp, sig, cands[j].t.name(), d)
				}
			}
			screen := func(int) (time.Duration, error) {
				if screenT[cur] < 0 {
					return 0, errors.New("screen")
				}
				return screenT[cur], nil
			}
			measure := func(...int) (time.Duration, error) {
				if measureT[cur] < 0 {
					return 0, errors.New("measure")
				}
				return measureT[cur], nil
			}
			best, measured, ok = choose(cands, cache, screen, measure)
			return
		}
		b1, m1, ok1, c1, cache1, a1 := run(func(c []candidate, cache *tactic.Cache, s func(int) (time.Duration, error), m func(...int) (time.Duration, error)) (int, int, bool) {
			return refChooseStep(c, 3, sig, cache, fp, s, m)
		})
		b2, m2, ok2, c2, cache2, a2 := run(func(c []candidate, cache *tactic.Cache, s func(int) (time.Duration, error), m func(...int) (time.Duration, error)) (int, int, bool) {
			best, n, err := chooseStep(c, 3, "layer", "Gemm", sig, cache, fp, s, m)
			if err != nil && !errors.Is(err, tactic.ErrNoCandidate) {
				t.Fatalf("trial %d: %v", trial, err)
			}
			return best, n, err == nil
		})
		if ok1 != ok2 || (ok1 && b1 != b2) || m1 != m2 || !slices.Equal(a1, a2) {
			t.Fatalf("trial %d (measure %v screen %v apply errors %v cached %v): chose %d (ran %v), measured %d, applied %v; want %d (%v), %d, %v", trial, measureT, screenT, applyErr, cached, b2, ok2, m2, a2, b1, ok1, m1, a1)
		}
		for j := range n {
			if c1[j].t != c2[j].t || c1[j].cached != c2[j].cached {
				t.Fatalf("trial %d: candidate %d: %+v cached %v, want %+v cached %v", trial, j, c2[j].t, c2[j].cached, c1[j].t, c1[j].cached)
			}
			if cached != nil {
				d1, ok1 := cache1.Lookup(fp, sig, c1[j].t.name())
				d2, ok2 := cache2.Lookup(fp, sig, c2[j].t.name())
				if d1 != d2 || ok1 != ok2 {
					t.Fatalf("trial %d: cache of candidate %d: %v %v, want %v %v", trial, j, d2, ok2, d1, ok1)
				}
			}
		}
		if cached != nil && cache1.Len() != cache2.Len() {
			t.Fatalf("trial %d: cache holds %d, want %d", trial, cache2.Len(), cache1.Len())
		}
	}
}

// checkChoices runs f with every step's choice made twice: by chooseStep
// (through tactic.Choose), with the real screen and measure, which are
// recorded per candidate, and by refChooseStep (the tuner's loop before
// it) on the recorded results replayed and on the timing cache's entries
// for the step as they were before. Every difference (the candidate
// chosen, a candidate's time or cache flag, the count measured, a
// measurement the reference asks for that chooseStep did not make) is a
// test error. It returns how many steps were compared and how many of
// their candidates were measured rather than read from the cache. Tests
// of the same package must not run in parallel with it.
func checkChoices(t *testing.T, f func()) (steps, measured int) {
	t.Helper()
	type rec struct {
		d   time.Duration
		err error
	}
	defer func() { chooseStepHook = chooseStep }()
	chooseStepHook = func(cands []candidate, i int, name, op, sig string, cache *tactic.Cache, fp device.Fingerprint, screen func(int) (time.Duration, error), measure func(...int) (time.Duration, error)) (int, int, error) {
		var before *tactic.Cache
		if cache != nil {
			before = tactic.New()
			for _, c := range cands {
				if d, ok := cache.Lookup(fp, sig, c.t.name()); ok {
					before.Store(fp, sig, c.t.name(), d)
				}
			}
		}
		// wrap gives copies of cands whose apply records which one is
		// applied.
		cur := -1
		wrap := func() []candidate {
			w := slices.Clone(cands)
			for j := range w {
				apply := cands[j].apply
				w[j].apply = func() error {
					err := apply()
					if err == nil {
						cur = j
					}
					return err
				}
			}
			return w
		}
		screens, measures := map[int]rec{}, map[int]rec{}
		got := wrap()
		best, n, err := chooseStep(got, i, name, op, sig, cache, fp,
			func(step int) (time.Duration, error) {
				d, err := screen(step)
				screens[cur] = rec{d, err}
				return d, err
			},
			func(steps ...int) (time.Duration, error) {
				d, err := measure(steps...)
				measures[cur] = rec{d, err}
				return d, err
			})
		copy(cands, got)
		for j := range cands {
			cands[j].apply = got[j].apply // the real ones, wrapped: same effect
		}
		replay := func(m map[int]rec, what string) (time.Duration, error) {
			r, ok := m[cur]
			if !ok {
				t.Errorf("step %s: the former loop %ss candidate %d (%s), which chooseStep did not", name, what, cur, cands[cur].t.name())
				return 0, errors.New("not recorded")
			}
			return r.d, r.err
		}
		want := wrap()
		for j := range want {
			want[j].t.NS, want[j].cached = 0, false
		}
		wbest, wn, wok := refChooseStep(want, i, sig, before, fp,
			func(int) (time.Duration, error) { return replay(screens, "screen") },
			func(...int) (time.Duration, error) { return replay(measures, "measure") })
		steps++
		measured += n
		if (err == nil) != wok || (wok && best != wbest) || n != wn {
			t.Errorf("step %s: chose %d (error %v), measured %d; the former loop chose %d (ran %v), measured %d", name, best, err, n, wbest, wok, wn)
		}
		for j := range want {
			if got[j].t != want[j].t || got[j].cached != want[j].cached {
				t.Errorf("step %s candidate %d: %+v cached %v; the former loop %+v cached %v", name, j, got[j].t, got[j].cached, want[j].t, want[j].cached)
			}
		}
		return best, n, err
	}
	f()
	return steps, measured
}

// TestChooseStepsFake tunes resnet_mini against the fake libraries with
// checkChoices: every step chooses as the tuner's former loop did, without
// and then with the timing cache's times.
func TestChooseStepsFake(t *testing.T) {
	dir := fakeLibs(t)
	g := optimizedGraph(t, modelPath(t, "resnet_mini"), randomImages(t, "resnet_mini", 1, 1))
	cache := tactic.New()
	fp := device.Fingerprint{"gpu": "fake"}
	for _, pass := range []string{"timed", "from the cache"} {
		steps, measured := checkChoices(t, func() {
			fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, TimingCache: cache, CacheDevice: fp})
		})
		if steps == 0 || (pass == "timed") != (measured > 0) {
			t.Errorf("%s: %d steps compared, %d candidates measured", pass, steps, measured)
		}
		t.Logf("%s: %d steps chose as before, %d candidates measured", pass, steps, measured)
	}
}
