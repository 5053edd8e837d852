package gpuexec

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// TestInt8ChainTuneFake tunes the bottleneck body's first two stages (at
// 16x16, batch 2) as an INT8 engine with the chains on, as kiln build does by default on
// compute 9.0 (the fake GPU; no variable set), against the fake libraries:
//
//   - each quantized layer is timed as chained (its signature plus
//     chainSig: what it reads and writes in 8 bits) among its INT8 tactics
//     only: a timing cache that makes a cuDNN layer's last chained engine
//     fastest gives it that engine (at 1 us); expand_i8u2 keeps the
//     expanding 1x1s; the reducing 1x1s it runs untuned (the second
//     stage's) take cuDNN's INT8 graph, the last candidate, reading and
//     writing 8 bits as expand_i8u2 did;
//     the FP16 per-layer timings hold no INT8 name;
//   - the engines tie (the fake's events all measure 1.5 ms), which keeps
//     the tuned INT8 engine: every quantized layer INT8, chained as the
//     untuned engine chains them; the tactics record it (Quant);
//   - the tactics applied without timing (a plan's load) rebuild the same
//     engine: same layers in INT8, same engines, same 8-bit flags;
//   - when the untuned chained engines measure fastest (chainTimeHook), the
//     INT8 engine runs them and its tactics name them;
//   - when FP16 measures fastest, the engine is FP16 and no tactic is
//     INT8.
func TestInt8ChainTuneFake(t *testing.T) {
	dir := fakeLibs(t)
	// two stages at 16x16, batch 2: 512 and 128 rows, so that the second
	// stage's reducing 1x1s (128 channels out) fit expand_i8u2
	g := bottleneckBodyAt(rand.New(rand.NewPCG(7, 8)), 2, 2, 16)
	if err := optimize.Run(g, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	scales := map[string]float32{}
	for _, n := range g.Nodes {
		if strings.Contains(n.OpType, "Conv") {
			scales[n.Name] = 0.05
		}
		for _, v := range n.Outputs {
			scales[Int8ValueKey(v.Name)] = 0.05
		}
	}
	i8xLoadHook = func(e *Engine, st *i8xState) error {
		st.fn, st.dq, st.sms = e.int8.fns["int8"], e.int8.fns["int8"], 132
		return nil
	}
	t.Cleanup(func() { i8xLoadHook = nil })
	for _, k := range []string{EnvInt8Expand, EnvUnverified, EnvInt8Chain, EnvInt8All} {
		t.Setenv(k, "")
	}
	t.Setenv(EnvInt8Reduce, "1") // expand_i8u2 on the reducing 1x1s too (not yet the default)
	// the untuned engine: what the chains make of every quantized layer
	eu, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales})
	type flags struct{ in8, z8, out8, x8 bool }
	flagsOf := func(q *int8Conv) flags {
		return flags{q.in8, q.x8 != nil && q.x8.z8, q.out8, q.x8 != nil}
	}
	want := map[string]flags{}
	for _, q := range eu.int8.use {
		want[q.name] = flagsOf(q)
	}
	if len(want) == 0 {
		t.Fatal("the untuned engine runs no layer in INT8")
	}

	fp := device.Fingerprint{"gpu": "fake"}
	cache, err := tactic.Open(filepath.Join(t.TempDir(), "timing.json"))
	if err != nil {
		t.Fatal(err)
	}
	// the cache makes each chained cuDNN layer's last engine fastest
	last := map[string]string{} // node -> the engine it should take
	chained := map[string]bool{}
	saved := chooseStepHook
	chooseStepHook = func(cands []candidate, i int, name, op, sig string, c *tactic.Cache, f device.Fingerprint, screen func(int) (time.Duration, error), measure func(...int) (time.Duration, error)) (int, int, error) {
		if strings.Contains(sig, " int8-chain ") {
			n := cands[len(cands)-1].t
			c.Store(f, sig, n.name(), time.Microsecond)
			chained[name] = true
			last[name] = n.name()
		} else {
			for _, k := range cands {
				if k.t.Quant != "" {
					t.Errorf("%s: INT8 tactic %s timed against FP16 (signature %q)", name, k.t.name(), sig)
				}
			}
		}
		return saved(cands, i, name, op, sig, c, f, screen, measure)
	}
	t.Cleanup(func() { chooseStepHook = saved })

	et, ct := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: fp})
	if et.chainChoice() != "int8" {
		t.Fatalf("the engine-level choice is %q (times %v), want int8", et.chainChoice(), et.int8.times)
	}
	picked := et.Tactics()
	if len(et.int8.use) != len(want) || len(et.int8.spare) != 0 {
		t.Errorf("tuned: %d layers INT8 (want %d), %d spare", len(et.int8.use), len(want), len(et.int8.spare))
	}
	nCUDNN, nReduce := 0, 0
	for _, q := range et.int8.use {
		s := et.prog.steps[0]
		for _, st := range et.prog.steps {
			if st.node.Name == q.name {
				s = st
			}
		}
		tt := picked[q.name]
		if !chained[s.name()] {
			t.Errorf("%s was not timed as chained", q.name)
		}
		w := want[q.name]
		if w.x8 && !w.z8 && q.x8 == nil {
			// a reducing 1x1 that expand_i8u2 runs untuned: cuDNN's INT8
			// graph (the cache's fastest), reading and writing the same
			nReduce++
			w.x8 = false
		}
		if got := flagsOf(q); got != w {
			t.Errorf("%s: 8-bit flags %+v, want %+v (the untuned engine's %+v)", q.name, got, w, want[q.name])
		}
		if tt.Quant == "" || tt.NS != 1000 || tt.name() != last[s.name()] {
			t.Errorf("%s: tactic %s (%+v), want %s at 1 us", q.name, tt.name(), tt, last[s.name()])
		}
		if q.x8 == nil {
			nCUDNN++
			if q.g.Engine().ID != tt.Graph {
				t.Errorf("%s runs engine %s, its tactic says %s", q.name, q.g.Engine().ID, tt.Graph)
			}
		}
	}
	if nCUDNN == 0 || nReduce == 0 {
		t.Errorf("%d cuDNN INT8 layers, %d of them reducing 1x1s that expand_i8u2 runs untuned: want some of each", nCUDNN, nReduce)
	}
	in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 2, 64, 16, 16)}
	for range 2 {
		if _, err := ct.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}

	// the tactics applied without timing, as a plan's load does
	chooseStepHook = saved
	ea, ca := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tactics: picked})
	if ea.Measured() != 0 || len(ea.int8.use) != len(want) {
		t.Errorf("applied: %d measured, %d layers INT8, want 0 and %d", ea.Measured(), len(ea.int8.use), len(want))
	}
	for _, q := range ea.int8.use {
		if got, w := flagsOf(q), flagsOf(et.int8.use[stepOf(et, q.name)]); got != w {
			t.Errorf("applied: %s: 8-bit flags %+v, want the tuned engine's %+v", q.name, got, w)
		}
		if q.x8 == nil && q.g.Engine().ID != picked[q.name].Graph {
			t.Errorf("applied: %s runs engine %s, the plan says %s", q.name, q.g.Engine().ID, picked[q.name].Graph)
		}
	}
	if _, err := ca.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	// the untuned engines measured fastest: the INT8 engine runs them
	t.Cleanup(func() { chainTimeHook = nil })
	faster := func(way string) func(string, time.Duration) time.Duration {
		return func(w string, d time.Duration) time.Duration {
			if w == way {
				return d / 2
			}
			return d
		}
	}
	chainTimeHook = faster("int8-first")
	e1, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: fp})
	if e1.chainChoice() != "int8-first" || len(e1.int8.use) != len(want) {
		t.Errorf("untuned INT8 fastest: choice %q, %d layers INT8", e1.chainChoice(), len(e1.int8.use))
	}
	for _, q := range e1.int8.use {
		if tt := e1.Tactics()[q.name]; tt.Quant == "" || q.x8 == nil && (tt.name() == last[q.name] || q.g.Engine().ID != tt.Graph) {
			t.Errorf("untuned INT8 fastest: %s: tactic %s, runs %s", q.name, tt.name(), q.g.Engine().ID)
		}
	}

	// FP16 measured fastest: the engine is FP16
	chainTimeHook = faster("fp16")
	ef, cf := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Tune: true, TimingCache: cache, CacheDevice: fp})
	if ef.chainChoice() != "fp16" || len(ef.int8.use) != 0 || len(ef.int8.spare) != 0 {
		t.Errorf("FP16 fastest: choice %q (times %v), %d layers INT8, %d spare", ef.chainChoice(), ef.int8.times, len(ef.int8.use), len(ef.int8.spare))
	}
	for name, tt := range ef.Tactics() {
		if tt.Quant != "" {
			t.Errorf("FP16 fastest: %s: tactic %s", name, tt.name())
		}
	}
	if _, err := cf.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}

// stepOf is the step of e running node name.
func stepOf(e *Engine, name string) int {
	for i, s := range e.prog.steps {
		if s.node.Name == name {
			return i
		}
	}
	return -1
}
