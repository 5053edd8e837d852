package gpuexec

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// planCompiles runs f with the fake cuDNN tracing its backend calls and
// returns how many execution plans it finalized (each one a compile of a
// graph engine on a GPU: 0.3-0.7 s for an INT8 engine on an H100).
func planCompiles(t *testing.T, f func()) int {
	t.Helper()
	trace := filepath.Join(t.TempDir(), "trace")
	t.Setenv("KILN_FAKE_CUDNN_TRACE", trace)
	f()
	os.Unsetenv("KILN_FAKE_CUDNN_TRACE")
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "finalize ") && strings.Contains(l, " EXECUTION_PLAN -> 0") {
			n++
		}
	}
	return n
}

// TestCompilePlanTunedOnceFake: `kiln build --device cuda --int8` at its
// defaults (tuned, static shapes: compilePlan with Tune and no opt shapes)
// builds one engine before the plan's own, the tuned one, which is also
// the check that every layer runs on the GPU at the largest shapes; an
// untuned engine first (as before) compiled every INT8 layer's cuDNN graph
// once more for nothing. Counted with the fake cuDNN's trace: the
// compilation finalizes as many execution plans as a tuned engine alone,
// an untuned engine finalizes some (so the check engine would show), and
// the report still gives the memory at the largest shapes and every layer
// timed.
func TestCompilePlanTunedOnceFake(t *testing.T) {
	dir := fakeLibs(t)
	t.Setenv(cuda.EnvLibPath, dir)
	for _, k := range []string{EnvInt8All, EnvInt8Chain, EnvInt8Expand, EnvInt8Reduce, EnvInt8Pool} {
		t.Setenv(k, "")
	}
	g := bottleneckBodyAt(rand.New(rand.NewPCG(7, 8)), 1, 1, 16)
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
	var r device.LayerReport
	compiled := planCompiles(t, func() {
		prog, err := compilePlan(g, device.ExecOptions{Precision: "int8", Int8Scales: scales, Tune: true})
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		if r, err = device.ParseLayerReport(prog.(device.BlobProgram).Blobs()[device.LayersBlob]); err != nil {
			t.Fatal(err)
		}
	})
	on := true
	o := Options{LibDir: dir, FP16: true, Int8: scales, Int8Chain: &on}
	var e *Engine
	tuned := planCompiles(t, func() {
		to := o
		to.Tune = true
		e, _ = fakeEngine(t, dir, g, to)
	})
	untuned := planCompiles(t, func() { fakeEngine(t, dir, g, o) })
	t.Logf("execution plans finalized: compilePlan %d, a tuned engine %d, an untuned engine %d", compiled, tuned, untuned)
	if untuned == 0 || tuned == 0 {
		t.Fatalf("the engines finalize %d (tuned) and %d (untuned) plans: the count shows nothing", tuned, untuned)
	}
	if compiled != tuned {
		t.Errorf("compilePlan finalized %d execution plans, a tuned engine alone %d (an untuned one %d)", compiled, tuned, untuned)
	}
	if r.Shapes != "static" || len(r.Layers) != len(g.Nodes) {
		t.Errorf("report at %q shapes with %d layers, want static and %d", r.Shapes, len(r.Layers), len(g.Nodes))
	}
	if m := r.Memory; m.WeightBytes != e.WeightBytes() || m.ArenaBytes != e.ArenaBytes() || m.WorkspaceBytes != int64(e.ws) || m.WorkspaceBytes == 0 {
		t.Errorf("report memory %+v, the tuned engine's %+v", m, e.memory())
	}
	for _, l := range r.Layers {
		if l.Time == 0 && !strings.HasPrefix(l.Tactic, "none:") && l.Tactic != "alias" {
			t.Errorf("%s (%s) not timed", l.Name, l.Tactic)
		}
	}
}

// TestInt8PlanLoadCompilesOnceFake: loading a plan tuned with the chains
// (its tactics applied, Int8Chain recorded) compiles each cuDNN INT8
// layer's graph once: a chained layer's graph writing 8 bits from the
// recorded engine, without first building the graph writing half that
// the chains replace at once (as before: two compiles a chained layer).
// Counted with the fake cuDNN's trace; the loaded engine runs the same
// layers, engines and 8-bit flags as the tuned one, and runs.
func TestInt8PlanLoadCompilesOnceFake(t *testing.T) {
	dir := fakeLibs(t)
	for _, k := range []string{EnvInt8All, EnvInt8Chain, EnvInt8Expand, EnvInt8Reduce, EnvInt8Pool} {
		t.Setenv(k, "")
	}
	t.Setenv(EnvUnverified, "")
	g := bottleneckBodyAt(rand.New(rand.NewPCG(7, 8)), 1, 1, 16)
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
	// with expand_i8u2 (every cuDNN layer chained), and without it (the
	// expanding 1x1s cuDNN graphs with a residual: they write half)
	for _, expand := range []string{"", "0"} {
		t.Setenv(EnvInt8Expand, expand)
		on := true
		te, _ := fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Int8Chain: &on, Tune: true})
		if te.chainChoice() != "int8" {
			t.Fatalf("tuned: choice %q", te.chainChoice())
		}
		var le *Engine
		var lc *Context
		compiles := planCompiles(t, func() {
			le, lc = fakeEngine(t, dir, g, Options{LibDir: dir, FP16: true, Int8: scales, Int8Chain: &on, Tactics: te.Tactics()})
		})
		cudnn, chained, unchained := 0, 0, 0
		for i, q := range te.int8.use {
			l := le.int8.use[i]
			if l == nil || l.in8 != q.in8 || l.out8 != q.out8 || (q.x8 == nil) != (l.x8 == nil) || (q.g == nil) != (l.g == nil) ||
				q.g != nil && q.g.Engine().ID != l.g.Engine().ID {
				t.Errorf("the loaded plan runs %s otherwise: %s, the build %s", q.name, le.int8Tactic(i), te.int8Tactic(i))
				continue
			}
			if l.g != nil {
				cudnn++
				if l.out8 {
					chained++
				} else {
					unchained++
				}
				if len(l.g.Candidates) != 1 {
					t.Errorf("%s: %d engines built, want the recorded one", l.name, len(l.g.Candidates))
				}
			}
		}
		t.Logf("%s=%q: the loaded plan: %d cuDNN INT8 layers (%d writing 8 bits), %d execution plans finalized", EnvInt8Expand, expand, cudnn, chained, compiles)
		if chained == 0 {
			t.Fatal("no chained cuDNN layer: the count shows nothing")
		}
		if compiles != cudnn {
			t.Errorf("loading finalized %d execution plans for %d cuDNN INT8 layers (%d chained), want one each", compiles, cudnn, chained)
		}
		if expand == "0" && (unchained == 0 || cudnn != chained+unchained) {
			t.Errorf("without expand_i8u2: %d cuDNN layers, %d chained, %d writing half; want some of each", cudnn, chained, unchained)
		}
		in := map[string]*tensor.Tensor{"input": tensor.New(tensor.Float32, 1, 64, 16, 16)}
		if _, err := lc.Run(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
}
