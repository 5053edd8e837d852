package tactic_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/engine"
	. "github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// sharedModels is where CI keeps the reference models.
const sharedModels = "../../../shared/models"

// loadOptimized reads a shared model, optimizes it at level 2 and sets the
// first dim of its inputs, when symbolic, to 1 (batch 1), as the builder
// does for an opt shape; it skips the test when the model is absent.
func loadOptimized(tb testing.TB, name string) (*ir.Graph, string) {
	tb.Helper()
	dir := filepath.Join(sharedModels, name)
	path := filepath.Join(dir, "model.onnx")
	if _, err := os.Stat(path); err != nil {
		tb.Skipf("needs %s (the shared reference models): %v", path, err)
	}
	f, err := onnx.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		tb.Fatal(err)
	}
	if err := optimize.Run(g, 2, nil); err != nil {
		tb.Fatal(err)
	}
	for _, v := range g.Inputs {
		for i, d := range v.Type.Shape {
			if i == 0 && !d.Known() {
				v.Type.Shape[i] = ir.D(1)
			}
		}
	}
	return g, dir
}

// cpuFingerprint is the fingerprint of the cpu device.
func cpuFingerprint(tb testing.TB) device.Fingerprint {
	tb.Helper()
	fp, err := cpu.Device{}.Fingerprint()
	if err != nil {
		tb.Fatal(err)
	}
	return fp
}

// checkModel runs g with the tactics chosen on test_data_set_0 of dir and
// compares the outputs with the reference ones.
func checkModel(t *testing.T, g *ir.Graph, dir string, tactics map[string]string) {
	t.Helper()
	e, err := engine.NewWithOptions(g, engine.Options{Tactics: tactics})
	if err != nil {
		t.Fatal(err)
	}
	set := filepath.Join(dir, "test_data_set_0")
	in := map[string]*tensor.Tensor{}
	for i, v := range e.Inputs() {
		x, _, err := onnx.ReadTensorFile(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
		if err != nil {
			t.Fatal(err)
		}
		in[v.Name] = x
	}
	got, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range g.Outputs {
		want, _, err := onnx.ReadTensorFile(filepath.Join(set, fmt.Sprintf("output_%d.pb", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := allClose(got[v.Name], want, 1e-3, 1e-4); err != nil {
			t.Errorf("output %q with tactics: %v", v.Name, err)
		}
	}
}

// allClose checks float32 tensors: |got-want| <= atol + rtol*|want|.
func allClose(got, want *tensor.Tensor, rtol, atol float64) error {
	if got == nil || got.DType != tensor.Float32 || want.DType != tensor.Float32 || !slices.Equal(got.Shape, want.Shape) {
		return fmt.Errorf("got %v, want a float32 tensor of shape %v", got, want.Shape)
	}
	g, w := got.Float32s(), want.Float32s()
	for i := range w {
		if d := math.Abs(float64(g[i]) - float64(w[i])); !(d <= atol+rtol*math.Abs(float64(w[i]))) {
			return fmt.Errorf("element %d is %g, want %g", i, g[i], w[i])
		}
	}
	return nil
}

// TestSelectModel selects tactics for reference models at the shapes of
// their test data (one timed run each) and checks that each model still
// computes its reference outputs with the chosen tactics, and with a
// non-default tactic forced on every layer that has one.
func TestSelectModel(t *testing.T) {
	if testing.Short() {
		t.Skip("times every tactic of a model")
	}
	for _, tc := range []struct {
		name string
		ops  []string // op types that must have a choice
	}{
		{"resnet_mini", []string{"FusedConv"}},
		{"bert_mini", []string{"FusedMatMul"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, dir := loadOptimized(t, tc.name)
			setTestShapes(t, g, dir)
			choices, err := Select(context.Background(), g, cpuFingerprint(t), nil, Options{Runs: 1})
			if err != nil {
				t.Fatal(err)
			}
			found := map[string]bool{}
			for _, n := range g.Nodes {
				if _, ok := choices[n.Name]; ok {
					found[n.OpType] = true
				}
			}
			for _, op := range tc.ops {
				if !found[op] {
					t.Errorf("no %s layer has tactics (choices for %v)", op, found)
				}
			}
			forced := map[string]string{}
			for name, c := range choices {
				forced[name] = c.Default
				for t := range c.Times {
					if t != c.Default {
						forced[name] = t
						break
					}
				}
			}
			checkModel(t, g, dir, Tactics(choices))
			checkModel(t, g, dir, forced)
		})
	}
}

// setTestShapes sets the graph inputs to the shapes of test_data_set_0.
func setTestShapes(t *testing.T, g *ir.Graph, dir string) {
	t.Helper()
	var inputs []*ir.Value
	for _, v := range g.Inputs {
		if v.Const == nil {
			inputs = append(inputs, v)
		}
	}
	for i, v := range inputs {
		x, _, err := onnx.ReadTensorFile(filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", i)))
		if err != nil {
			t.Fatal(err)
		}
		v.Type.Shape = ir.KnownShape(x.Shape...)
	}
}

// layerKind names the kind of a tactical layer for the benchmark table:
// "conv 3x3 s1", "depthwise 3x3 s2", "conv 1x1 s1", "matmul".
func layerKind(n *ir.Node) string {
	if n.OpType != "FusedConv" {
		return strings.ToLower(strings.TrimPrefix(n.OpType, "Fused"))
	}
	w := n.Inputs[1].Type.Shape
	x := n.Inputs[0].Type.Shape
	kind := "conv"
	if g, ok := n.Attrs["group"]; ok && g.I > 1 && len(x) > 1 && x[1].Val == g.I {
		kind = "depthwise"
	} else if ok && g.I > 1 {
		kind = "group conv"
	}
	s := int64(1)
	if a, ok := n.Attrs["strides"]; ok && len(a.Ints) > 0 {
		s = a.Ints[0]
	}
	return fmt.Sprintf("%s %dx%d s%d", kind, w[2].Val, w[3].Val, s)
}

// TestTimingCacheBench is the benchmark of bench/results/timing-cache.md:
// Select on the CNN reference models without and with a warm cache, and
// which tactic won per layer kind. It runs only with KILN_TACTIC_BENCH=1:
//
//	KILN_TACTIC_BENCH=1 go test ./engine/tactic -run TestTimingCacheBench -v -timeout 20m
func TestTimingCacheBench(t *testing.T) {
	if os.Getenv("KILN_TACTIC_BENCH") != "1" {
		t.Skip("set KILN_TACTIC_BENCH=1 to run the timing cache benchmark")
	}
	fp := cpuFingerprint(t)
	var report strings.Builder
	fmt.Fprintf(&report, "device: %v\n\n", fp)
	fmt.Fprintf(&report, "| model | tactical layers | distinct signatures | cold Select | warm Select | cold/warm | tactics timed (cold) | tactics timed (warm) |\n|---|---|---|---|---|---|---|---|\n")
	type stat struct {
		layers   int
		wins     map[string]int
		speedups []float64
		def, got time.Duration
		defaults map[string]int
	}
	stats := map[string]*stat{}
	ratios := map[string][]float64{} // layer kind, tactic -> time / default's time
	var latency []string
	for _, name := range []string{"resnet_mini", "mobilenet_v2"} {
		g, dir := loadOptimized(t, name)
		path := filepath.Join(t.TempDir(), "kiln.timing")
		cache, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		measured := 0
		count := func(p Progress) {
			if !p.Cached {
				measured++
			}
		}
		start := time.Now()
		choices, err := Select(context.Background(), g, fp, cache, Options{Progress: count})
		if err != nil {
			t.Fatal(err)
		}
		cold := time.Since(start)
		coldMeasured := measured
		if err := cache.Save(); err != nil {
			t.Fatal(err)
		}
		warmCache, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		g2, _ := loadOptimized(t, name)
		measured = 0
		start = time.Now()
		again, err := Select(context.Background(), g2, fp, warmCache, Options{Progress: count})
		if err != nil {
			t.Fatal(err)
		}
		warm := time.Since(start)
		sigs := map[string]bool{}
		for _, n := range g.Nodes {
			if _, ok := choices[n.Name]; ok {
				sigs[Signature(g, n)] = true
			}
		}
		fmt.Fprintf(&report, "| %s | %d | %d | %v | %v | %.0fx | %d | %d |\n", name, len(choices), len(sigs),
			cold.Round(time.Millisecond), warm.Round(10*time.Microsecond), float64(cold)/float64(warm), coldMeasured, measured)
		for n, c := range again {
			if !c.Cached || c.Tactic != choices[n].Tactic {
				t.Errorf("%s %s: warm %+v, cold %+v", name, n, c, choices[n])
			}
		}
		margin, err := Select(context.Background(), g2, fp, warmCache, Options{MinGain: 0.05})
		if err != nil {
			t.Fatal(err)
		}
		changed := 0
		for _, c := range margin {
			if c.Tactic != c.Default {
				changed++
			}
		}
		lat := modelLatency(t, g, dir, nil, Tactics(choices), Tactics(margin))
		latency = append(latency, fmt.Sprintf("| %s | %v | %v (%.2fx) | %v (%.2fx, %d layers not default) |", name, lat[0].Round(time.Microsecond),
			lat[1].Round(time.Microsecond), float64(lat[0])/float64(lat[1]), lat[2].Round(time.Microsecond), float64(lat[0])/float64(lat[2]), changed))
		for _, n := range g.Nodes {
			c, ok := choices[n.Name]
			if !ok {
				continue
			}
			k := layerKind(n)
			s := stats[k]
			if s == nil {
				s = &stat{wins: map[string]int{}, defaults: map[string]int{}}
				stats[k] = s
			}
			s.layers++
			for tac, d := range c.Times {
				rk := k + "\x00" + tac
				ratios[rk] = append(ratios[rk], float64(d)/float64(c.Times[c.Default]))
			}
			s.wins[c.Tactic]++
			s.defaults[c.Default]++
			s.speedups = append(s.speedups, c.Speedup())
			s.def += c.Times[c.Default]
			s.got += c.Time
		}
	}
	fmt.Fprintf(&report, "\n| layer kind | layers | default tactic (layers) | winning tactic (layers) | speedup vs default: median | max | sum of times default -> chosen |\n|---|---|---|---|---|---|---|\n")
	kinds := make([]string, 0, len(stats))
	for k := range stats {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	spell := func(m map[string]int) string {
		var parts []string
		for k, v := range m {
			parts = append(parts, fmt.Sprintf("%s (%d)", k, v))
		}
		sort.Strings(parts)
		return strings.Join(parts, ", ")
	}
	for _, k := range kinds {
		s := stats[k]
		slices.Sort(s.speedups)
		fmt.Fprintf(&report, "| %s | %d | %s | %s | %.2fx | %.2fx | %v -> %v |\n", k, s.layers, spell(s.defaults), spell(s.wins),
			s.speedups[len(s.speedups)/2], s.speedups[len(s.speedups)-1], s.def.Round(time.Microsecond), s.got.Round(time.Microsecond))
	}
	fmt.Fprintf(&report, "\n| layer kind | tactic | layers | time vs default: min | median | max |\n|---|---|---|---|---|---|\n")
	rkeys := make([]string, 0, len(ratios))
	for k := range ratios {
		rkeys = append(rkeys, k)
	}
	sort.Strings(rkeys)
	for _, k := range rkeys {
		r := ratios[k]
		slices.Sort(r)
		kind, tac, _ := strings.Cut(k, "\x00")
		fmt.Fprintf(&report, "| %s | %s | %d | %.2f | %.2f | %.2f |\n", kind, tac, len(r), r[0], r[len(r)/2], r[len(r)-1])
	}
	fmt.Fprintf(&report, "\n| model | latency, default tactics | fastest tactics | fastest, MinGain 0.05 |\n|---|---|---|---|\n%s\n", strings.Join(latency, "\n"))
	t.Log("\n" + report.String())
}

// modelLatency returns the median latency of g on test_data_set_0 of dir
// with each set of tactics (nil: the defaults), runs interleaved so that
// all see the same load, after checking the outputs of each.
func modelLatency(t *testing.T, g *ir.Graph, dir string, sets ...map[string]string) []time.Duration {
	t.Helper()
	var engines []*engine.Engine
	for _, tactics := range sets {
		checkModel(t, g, dir, tactics)
		e, err := engine.NewWithOptions(g, engine.Options{Tactics: tactics})
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, e)
	}
	in := map[string]*tensor.Tensor{}
	for i, v := range engines[0].Inputs() {
		x, _, err := onnx.ReadTensorFile(filepath.Join(dir, "test_data_set_0", fmt.Sprintf("input_%d.pb", i)))
		if err != nil {
			t.Fatal(err)
		}
		in[v.Name] = x
	}
	times := make([][]time.Duration, len(engines))
	for r := 0; r < 41; r++ {
		for i, e := range engines {
			start := time.Now()
			if _, err := e.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			if r > 0 { // the first runs warm up
				times[i] = append(times[i], time.Since(start))
			}
		}
	}
	med := make([]time.Duration, len(engines))
	for i := range times {
		slices.Sort(times[i])
		med[i] = times[i][len(times[i])/2]
	}
	return med
}

// BenchmarkSelectWarm is Select on resnet_mini with every time already in
// the cache: what a second build of the model spends on tactics.
func BenchmarkSelectWarm(b *testing.B) {
	g, _ := loadOptimized(b, "resnet_mini")
	fp := cpuFingerprint(b)
	cache := New()
	if _, err := Select(context.Background(), g, fp, cache, Options{Runs: 1}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := Select(context.Background(), g, fp, cache, Options{})
		if err != nil {
			b.Fatal(err)
		}
		for _, ch := range c {
			if !ch.Cached {
				b.Fatal("a layer was measured")
			}
		}
	}
}
