package gpuexec

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// TestInt8Conv3OnGPU is conv3_i8u2 in the INT8 executor (op_conv3_i8x.go)
// on an H100/H200, the quick check before ResNet-50's A/B
// (TestInt8ExpandOnGPU with KILN_I8X_AB_CONV3=1): bottleneckBody's 16
// blocks at 56x56, batch $KILN_C3_BATCH (default 64), with the builder's
// scales (builtInt8Scales), as two untuned chained INT8 engines, every 1x1
// on expand_i8u2: one with conv3_i8u2 on the 3x3s (KILN_CUDA_INT8_CONV3=1;
// all 16 must take it), one with cuDNN's INT8 graphs on them (=0). Both
// compute the same quantized arithmetic (they differ by one step of the
// float epilogue's rounding on some outputs), so against the float32 CPU
// engine on 2 batches the engine with conv3_i8u2 must be within the one
// without: mean relative L2 of the logits at most 1.5x its plus 0.01, and
// the cosine of the logits' differences from their batch mean at least
// 0.7 (a kernel computing the wrong thing is near 0 and off by ~1). Then
// both engines' device times and the per-layer table (the 3x3s' rows:
// conv3_i8u2 against cuDNN's INT8 graph). Skips below compute 9.0.
func TestInt8Conv3OnGPU(t *testing.T) {
	needGPU(t)
	start := time.Now()
	fp, _ := cuda.Probe(cuda.Options{})
	if fp.ComputeMajor != 9 || fp.ComputeMinor != 0 {
		t.Skipf("conv3_i8u2 needs compute 9.0, not %d.%d", fp.ComputeMajor, fp.ComputeMinor)
	}
	batch := 64
	if v, err := strconv.Atoi(os.Getenv("KILN_C3_BATCH")); err == nil && v > 0 {
		batch = v
	}
	body := func(n int) *ir.Graph {
		g := bottleneckBody(rand.New(rand.NewPCG(7, 8)), n, 4) // the same weights at both batches
		if err := optimize.Run(g, 2, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := ops.InferGraph(g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	g, cg := body(batch), body(16)
	src := bottleneckBody(rand.New(rand.NewPCG(7, 8)), 16, 4)
	r := rand.New(rand.NewPCG(41, 42))
	gen := func(n int) *tensor.Tensor { return variedMaps(r, n, 64, 56, 56) }
	var batches []map[string]*tensor.Tensor
	for range 4 {
		batches = append(batches, map[string]*tensor.Tensor{"input": gen(16)})
	}
	scales := builtInt8Scales(t, src, cg, batches, "")
	t.Logf("calibrated on the CPU by the builder (%d scales) in %.1f s", len(scales), time.Since(start).Seconds())
	labels := []string{"int8 conv3", "int8 cudnn 3x3"}
	engines := map[string]*Engine{}
	ctxs := map[string]*Context{}
	defer func() {
		for _, l := range labels {
			if c := ctxs[l]; c != nil {
				c.Close()
			}
			if e := engines[l]; e != nil {
				e.Close()
			}
		}
	}()
	for _, l := range labels {
		on := "1"
		if l != labels[0] {
			on = "0"
		}
		for k, v := range map[string]string{EnvInt8All: "1", EnvInt8Chain: "1", EnvInt8Expand: "1", EnvInt8Reduce: "1", EnvInt8Conv3: on} {
			t.Setenv(k, v)
		}
		st := time.Now()
		e, err := NewEngine(g, Options{FP16: true, Int8: scales})
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		engines[l] = e
		if ctxs[l], err = e.NewContext(); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		t.Logf("%s engine built in %.1f s", l, time.Since(st).Seconds())
	}
	e := engines[labels[0]]
	n3 := 0
	for i, s := range e.prog.steps {
		if s.conv == nil || s.conv.kh != 3 {
			continue
		}
		if q := e.int8.use[i]; q != nil && q.x8 != nil && q.x8.c3 != nil {
			n3++
			t.Logf("%s: %s", s.node.Name, e.int8Tactic(i))
		} else {
			t.Errorf("%s does not run conv3_i8u2", s.node.Name)
		}
	}
	if n3 == 0 {
		var errs []string
		if st := e.int8.c3; st != nil {
			for n, m := range st.mods {
				errs = append(errs, fmt.Sprintf("%s: %v", n, m.err))
			}
		}
		t.Fatalf("no layer runs conv3_i8u2 (builds: %v)", errs)
	}
	ref, err := engine.New(g.Clone())
	if err != nil {
		t.Fatal(err)
	}
	ev := evalAgainstCPU(t, ref, "input", gen, batch, 2*batch, labels, ctxs, func(label string, b int, ccos float64) {
		if label == labels[0] && ccos < 0.7 {
			t.Errorf("%s: cosine of the logits' differences from their batch mean to float32's %.4f (batch at %d)", label, ccos, b)
		}
	})
	a, b := ev.relSum[labels[0]]/2, ev.relSum[labels[1]]/2
	t.Logf("mean relative L2 of the logits to float32: %.4f with conv3_i8u2, %.4f with cuDNN's INT8 3x3s; top-1 agreement %.1f%% and %.1f%%",
		a, b, ev.pct(labels[0]), ev.pct(labels[1]))
	if a > 1.5*b+0.01 {
		t.Errorf("conv3_i8u2's engine is further from float32 (%.4f) than cuDNN's (%.4f) allows", a, b)
	}
	times := map[string]float64{}
	for _, l := range labels {
		if _, err := ctxs[l].DeviceTimes(5); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		ms, err := ctxs[l].DeviceTimes(30)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		sort.Float64s(ms)
		times[l] = ms[len(ms)/2]
	}
	t.Logf("bottleneck body batch %d on %s: %s %.3f ms, %s %.3f ms (%.3f ms saved by conv3_i8u2)", batch, fp.GPUName,
		labels[0], times[labels[0]], labels[1], times[labels[1]], times[labels[1]]-times[labels[0]])
	t.Log("per layer at batch " + strconv.Itoa(batch) + ":\n" + layerTable(t, e, labels, ctxs))
	t.Logf("test %.1f s", time.Since(start).Seconds())
}
