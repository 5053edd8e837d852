package gpuexec

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// TestLayerRunsInPlace describes the layers of half-precision programs
// that launch nothing (no GPU needed): the residual Add computed by the
// LayerNormalization after it, the attention's output Transpose written
// by the attention, the Split and head Transposes read through strides,
// Reshapes as aliases, and a node of the plan graph that the engine's
// shapes folded away.
func TestLayerRunsInPlace(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rnd := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64())
		}
		return x
	}
	b := ir.NewBuilder("ln", 17)
	x := b.Input("x", tensor.Float32, ir.D(3), ir.D(5), ir.D(64))
	z := b.Input("z", tensor.Float32, ir.D(3), ir.D(5), ir.D(64))
	s := b.Op("Add", []*ir.Value{x, z})
	b.Output(b.Op("LayerNormalization", []*ir.Value{s, b.Const("g", rnd(64)), b.Const("b", rnd(64))}, ir.IntAttr("axis", -1)), "out")
	lnGraph := b.Graph()
	if _, err := ops.InferGraph(lnGraph); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		g    *ir.Graph
		want map[string]string // op -> tactic prefix
	}{
		{"add + layernorm", lnGraph, map[string]string{
			"Add":                "fused into LayerNormalization " + lnGraph.Nodes[1].Name,
			"LayerNormalization": "layernorm_vec_f16",
			"folded":             "none: folded at the build's shapes",
		}},
		{"attention", qkvGraph(t, 2, 70, 2, 64), map[string]string{
			"Split":     "none: read in place through strides",
			"Reshape":   "none: ",
			"Attention": "attention_mma_fa_d64_f16",
			"Transpose": "",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := compileWith(tt.g, false, true, true)
			if err != nil {
				t.Fatal(err)
			}
			e := &Engine{prog: p}
			plan := &ir.Graph{Nodes: append(append([]*ir.Node{}, tt.g.Nodes...), &ir.Node{Name: "gone", OpType: "folded"})}
			runs := e.layerRuns(plan)
			if len(runs) != len(plan.Nodes) {
				t.Fatalf("%d layer runs for %d nodes", len(runs), len(plan.Nodes))
			}
			var att string
			for _, n := range tt.g.Nodes {
				if n.OpType == "Attention" {
					att = n.Name
				}
			}
			transposes := map[string]int{}
			for i, run := range runs {
				n := plan.Nodes[i]
				if run.Name != n.Name {
					t.Fatalf("run %d is %q, node %q", i, run.Name, n.Name)
				}
				if n.OpType == "Transpose" {
					transposes[run.Tactic]++
					continue
				}
				if want, ok := tt.want[n.OpType]; ok && !strings.HasPrefix(run.Tactic, want) {
					t.Errorf("%s %s: tactic %q, want %q", n.OpType, n.Name, run.Tactic, want)
				}
				if n.OpType != "folded" && run.Precision != "fp16" {
					t.Errorf("%s: precision %q, want fp16", n.Name, run.Precision)
				}
				if run.Time != 0 || run.Workspace != 0 {
					t.Errorf("%s: time %v, workspace %d without tuning nor libraries", n.Name, run.Time, run.Workspace)
				}
			}
			if att != "" && (transposes["written in place by attention "+att] != 1 || transposes["none: read in place through strides"] != 3) {
				t.Errorf("Transposes run as %v: want the output's written by %s, 3 read in place", transposes, att)
			}
		})
	}
}

// TestLayerRunsFake tunes resnet_mini against the fake libraries (every
// timing 1.5 ms): each layer that launches something has a time, the
// library layers name their algorithm and workspace, the untuned engine
// has no times, layers whose signature was timed before read their time
// from the timing cache (marked cached), and an engine tuned from a full
// cache measures no candidate but times the other layers again.
func TestLayerRunsFake(t *testing.T) {
	dir := fakeLibs(t)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 1, 1)
	g := optimizedGraph(t, path, in)
	fp := device.Fingerprint{"gpu": "fake"}
	cache := tactic.New()
	check := func(e *Engine, tuned, fromCache bool) {
		t.Helper()
		var convs, gemms, measured int
		for i, l := range e.Layers() {
			s := e.prog.steps[i]
			launches := len(s.launches) > 0 || s.conv != nil || s.gemm != nil
			switch {
			case !tuned || !launches:
				if l.Time != 0 {
					t.Errorf("%s (%s): time %v, want none", l.Node, l.Tactic, l.Time)
				}
			case l.Time != 1500*time.Microsecond:
				t.Errorf("%s (%s): time %v, want the fakes' 1.5 ms", l.Node, l.Tactic, l.Time)
			}
			lib := e.convs[i] != nil || e.gemms[i] != nil
			if lib && !l.Cached {
				measured++
			}
			if (fromCache && lib && !l.Cached) || (!lib && l.Cached) {
				t.Errorf("%s: cached %v", l.Node, l.Cached)
			}
			switch {
			case e.convs[i] != nil:
				convs++
				if !strings.HasPrefix(l.Tactic, "cudnn IMPLICIT_PRECOMP_GEMM (algo 1, FMA math)") || l.Workspace != int64(e.convs[i].Workspace) {
					t.Errorf("%s: tactic %q, workspace %d", l.Node, l.Tactic, l.Workspace)
				}
			case e.gemms[i] != nil:
				gemms++
				if want := "cublaslt algo 42 (heuristic #0 of "; !strings.HasPrefix(l.Tactic, want) || !strings.HasSuffix(l.Tactic, ", bias epilogue") {
					t.Errorf("%s: tactic %q, want %q... bias epilogue", l.Node, l.Tactic, want)
				}
			case launches:
				if l.Tactic != l.Impl && !strings.HasPrefix(l.Tactic, l.Impl+" + ") {
					t.Errorf("%s: tactic %q does not start with its kernel %q", l.Node, l.Tactic, l.Impl)
				}
			}
			if l.Precision != "fp32" {
				t.Errorf("%s: precision %q", l.Node, l.Precision)
			}
		}
		if convs == 0 || gemms == 0 {
			t.Errorf("%d layers on cuDNN, %d on cuBLASLt", convs, gemms)
		}
		// tuned afresh, the first layer of each signature is measured (the
		// others of its signature read the cache)
		if tuned && !fromCache && measured == 0 {
			t.Error("every library layer's time came from the cache")
		}
	}
	plain, _ := fakeEngine(t, dir, g, Options{LibDir: dir})
	check(plain, false, false)
	first, _ := fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, TimingCache: cache, CacheDevice: fp})
	check(first, true, false)
	again, c := fakeEngine(t, dir, g, Options{LibDir: dir, Tune: true, TimingCache: cache, CacheDevice: fp})
	check(again, true, true)
	if again.Measured() != 0 {
		t.Errorf("the engine tuned from the cache measured %d candidates", again.Measured())
	}
	if _, err := c.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	m := first.memory()
	if m.WeightBytes != first.WeightBytes() || m.ArenaBytes != first.ArenaBytes() || m.WorkspaceBytes <= 0 {
		t.Errorf("memory %+v", m)
	}
}

// TestCompilePlanLayerReportFake compiles resnet_mini as a plan would
// (the cuda device's Compiler, fake libraries): the program's
// device.LayersBlob section lists every node of the graph, times them when
// tuned (at the opt shapes given), and gives the memory at the largest
// shapes, which grows with them.
func TestCompilePlanLayerReportFake(t *testing.T) {
	dir := fakeLibs(t)
	t.Setenv(cuda.EnvLibPath, dir)
	path := modelPath(t, "resnet_mini")
	in := randomImages(t, "resnet_mini", 1, 1)
	g := optimizedGraph(t, path, in)
	shape := func(n int) map[string][]int { return map[string][]int{"input": {n, 3, 224, 224}} }
	var small device.Memory
	for _, tt := range []struct {
		name   string
		o      device.ExecOptions
		shapes string
		timed  bool
	}{
		{"static", device.ExecOptions{}, "static", false},
		{"max shapes", device.ExecOptions{MaxShapes: shape(4)}, "max", false},
		{"tuned at opt shapes", device.ExecOptions{MaxShapes: shape(4), OptShapes: shape(2), Tune: true}, "opt", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := compilePlan(g, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			r, err := device.ParseLayerReport(prog.(device.BlobProgram).Blobs()[device.LayersBlob])
			if err != nil {
				t.Fatal(err)
			}
			if r.Shapes != tt.shapes || len(r.Layers) != len(g.Nodes) {
				t.Fatalf("report at %q shapes with %d layers, want %q and %d", r.Shapes, len(r.Layers), tt.shapes, len(g.Nodes))
			}
			for i, l := range r.Layers {
				if l.Name != g.Nodes[i].Name || l.Tactic == "" || l.Precision != "fp32" {
					t.Errorf("layer %d: %+v", i, l)
				}
				if alias := strings.HasPrefix(l.Tactic, "none:"); (l.Time > 0) != (tt.timed && !alias) {
					t.Errorf("%s (%s): time %v", l.Name, l.Tactic, l.Time)
				}
			}
			m := r.Memory
			if m.WeightBytes == 0 || m.ArenaBytes == 0 || m.WorkspaceBytes == 0 {
				t.Errorf("memory %+v", m)
			}
			if tt.shapes == "static" {
				small = m
			} else if m.ArenaBytes < 3*small.ArenaBytes || m.WeightBytes != small.WeightBytes {
				t.Errorf("memory at batch 4 %+v, at batch 1 %+v: want about 4 times the arena, the same weights", m, small)
			}
		})
	}
}
