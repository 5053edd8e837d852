package gpuexec

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/tensor"
)

// TestInt8BuildOnGPU builds ResNet-50 ($KILN_MODELS/resnet50/model.onnx) at
// batch 256 as `kiln build --device cuda --int8` does with its defaults:
// the builder's scales (calibrated on the CPU), Tune on, no variable set
// (on compute 9.0 the chains and expand_i8u2 on; tune.go's tuneChained
// chooses each INT8 layer's engine as chained, then the engine against
// FP16), and reports its device time (CUDA graph replay, median of 30)
// against FP16 tuned, the engine-level choice with the three times, and
// top-1 agreement with float32 on the CPU ($KILN_INT8_IMAGES varied
// images, default one batch). While the test is under 120 s, it also
// applies the tuned engine's tactics without timing (what loading the
// plan does) and checks that it runs the same layers in INT8 at about the
// same time. The criterion (1.6x, top-1 >= 99%) is reported, and
// the top-1 below 99% fails.
func TestInt8BuildOnGPU(t *testing.T) {
	needGPU(t)
	start := time.Now()
	var path string
	for _, env := range []string{"KILN_MODELS", "KILN_GPU_BENCH"} {
		if dir := os.Getenv(env); dir != "" {
			if p := filepath.Join(dir, "resnet50", "model.onnx"); fileExists(p) {
				path = p
				break
			}
		}
	}
	if path == "" {
		t.Skip("needs $KILN_MODELS/resnet50/model.onnx")
	}
	for _, k := range []string{EnvInt8All, EnvInt8Chain, EnvInt8Expand, EnvUnverified} {
		if v, ok := os.LookupEnv(k); ok {
			t.Logf("unsetting %s=%s: the test builds as users do", k, v)
		}
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	fp, _ := cuda.Probe(cuda.Options{})
	batch, images := 256, 256
	if v, err := strconv.Atoi(os.Getenv("KILN_INT8_IMAGES")); err == nil && v > 0 {
		images = max(batch, v/batch*batch)
	}
	r := rand.New(rand.NewPCG(41, 42))
	gen := func(n int) *tensor.Tensor { return variedImages(r, n, 224, 224) }
	in := "input"
	g := optimizedGraph(t, path, map[string]*tensor.Tensor{in: gen(batch)})
	cg := optimizedGraph(t, path, map[string]*tensor.Tensor{in: gen(16)})
	src := graphAt(t, path, map[string]*tensor.Tensor{in: gen(16)}, 0)
	var batches []map[string]*tensor.Tensor
	for range 4 {
		batches = append(batches, map[string]*tensor.Tensor{in: gen(16)})
	}
	scales := builtInt8Scales(t, src, cg, batches, "")
	t.Logf("resnet50: calibrated on the CPU by the builder (%d scales) in %.1f s", len(scales), time.Since(start).Seconds())
	type built struct {
		e *Engine
		c *Context
	}
	var all []built
	defer func() {
		for _, b := range all {
			b.c.Close()
			b.e.Close()
		}
	}()
	make_ := func(label string, o Options) built {
		st := time.Now()
		e, err := NewEngine(g, o)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		c, err := e.NewContext()
		if err != nil {
			e.Close()
			t.Fatalf("%s: %v", label, err)
		}
		t.Logf("%s engine built in %.1f s", label, time.Since(st).Seconds())
		all = append(all, built{e, c})
		return built{e, c}
	}
	fp16 := make_("fp16 tuned", Options{FP16: true, Tune: true})
	i8 := make_("int8 as kiln build (tuned, defaults)", Options{FP16: true, Int8: scales, Tune: true})
	e := i8.e
	tms := e.int8.times
	t.Logf("int8 build: chains %v; engine-level choice %q (whole engine, CUDA graph: tuned INT8 %.3f ms, untuned INT8 engines %.3f ms, FP16 choices %.3f ms)",
		e.int8Chains(), e.chainChoice(), msOf(tms[0]), msOf(tms[1]), msOf(tms[2]))
	count := map[string]int{}
	var x8, out8 int
	for _, l := range e.Layers() {
		if strings.Contains(l.Op, "Conv") {
			count[l.Precision+" "+l.Impl]++
		}
	}
	for _, q := range e.int8.use {
		if q.x8 != nil {
			x8++
		}
		if q.out8 {
			out8++
		}
	}
	var how []string
	for k, v := range count {
		how = append(how, fmt.Sprintf("%dx %s", v, k))
	}
	sort.Strings(how)
	t.Logf("int8 build: %d INT8 convolutions (%d write 8 bits, %d expand_i8u2): %s", len(e.int8.use), out8, x8, strings.Join(how, ", "))
	// what per-layer tuning gained: each INT8 layer's chained time with
	// the engine chosen and with the untuned engine's
	var tb strings.Builder
	var sumT, sumF int64
	tb.WriteString("| layer | tactic chosen | chained us | untuned engine's us |\n| --- | --- | --- | --- |\n")
	for i, s := range e.prog.steps {
		if e.int8.use[i] == nil {
			continue
		}
		tt := e.tactics[s.node.Name]
		f := e.int8.firstNS[s.node.Name]
		sumT += tt.NS
		sumF += f
		fmt.Fprintf(&tb, "| %s | %s | %.1f | %.1f |\n", s.node.Name, tt.name(), float64(tt.NS)/1e3, float64(f)/1e3)
	}
	fmt.Fprintf(&tb, "| sum | | %.1f | %.1f |\n", float64(sumT)/1e3, float64(sumF)/1e3)
	t.Log("int8 build, per layer as timed chained:\n" + tb.String())
	labels := []string{"int8 build", "fp16"}
	engines := map[string]built{"int8 build": i8, "fp16": fp16}
	if time.Since(start) < 120*time.Second && len(e.int8.use) > 0 {
		on := true
		ld := make_("int8 plan loaded (tactics applied)", Options{FP16: true, Int8: scales, Tactics: e.Tactics(), Int8Chain: &on})
		if ld.e.Measured() != 0 || len(ld.e.int8.use) != len(e.int8.use) {
			t.Errorf("the loaded plan: %d timings, %d INT8 layers (the build %d)", ld.e.Measured(), len(ld.e.int8.use), len(e.int8.use))
		}
		for i, q := range e.int8.use {
			l := ld.e.int8.use[i]
			if l == nil || l.in8 != q.in8 || l.out8 != q.out8 || (q.x8 == nil) != (l.x8 == nil) ||
				q.g != nil && l.g != nil && q.g.Engine().ID != l.g.Engine().ID {
				t.Errorf("the loaded plan runs %s otherwise: %s, the build %s", q.name, ld.e.int8Tactic(i), e.int8Tactic(i))
			}
		}
		engines["int8 loaded"] = ld
		labels = append(labels, "int8 loaded")
	} else {
		t.Logf("%.0f s in: the loaded plan's engine is left out", time.Since(start).Seconds())
	}
	ref, err := engine.New(g.Clone())
	if err != nil {
		t.Fatal(err)
	}
	ctxs := map[string]*Context{}
	for _, l := range labels {
		ctxs[l] = engines[l].c
	}
	ev := evalAgainstCPU(t, ref, in, gen, batch, images, labels, ctxs, nil)
	pct, total := ev.pct, ev.total
	times := map[string]float64{}
	var rows []string
	for _, l := range labels {
		c := engines[l].c
		if _, err := c.DeviceTimes(5); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		ms, err := c.DeviceTimes(30)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		sort.Float64s(ms)
		times[l] = ms[len(ms)/2]
		rows = append(rows, fmt.Sprintf("%s %.3f ms (%.0f img/s, top-1 %.2f%% of %d)", l, times[l], float64(batch)/times[l]*1e3, pct(l), total))
	}
	t.Logf("resnet50 batch %d on %s: %s; kiln build --int8 is %.2fx fp16 (issue 11 asks 1.6x); test %.0f s",
		batch, fp.GPUName, strings.Join(rows, ", "), times["fp16"]/times["int8 build"], time.Since(start).Seconds())
	t.Logf("per layer at batch %d:\n%s", batch, layerTable(t, engines["int8 build"].e, labels, ctxs))
	if p := pct("int8 build"); p < 99 {
		t.Errorf("int8 build: top-1 agreement with float32 %.2f%%, the issue asks at least 99%%", p)
	}
}

// msOf is d in milliseconds.
func msOf(d time.Duration) float64 { return float64(d) / 1e6 }
