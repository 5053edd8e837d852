package gpuexec

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// benchRow is one kiln measurement of TestGPUBench, written as a JSON line
// for bench/gpu.sh to merge with PyTorch's.
type benchRow struct {
	Model     string  `json:"model"`
	Batch     int     `json:"batch"`
	Precision string  `json:"precision"`
	DeviceMS  float64 `json:"device_ms"` // median device time of the layers (CUDA events, graph replay)
	EndToEnd  float64 `json:"e2e_ms"`    // median Context.Run, host tensors in and out
	BuildS    float64 `json:"build_s"`   // NewEngine (with tuning) and the first two runs
	Check     string  `json:"check"`     // correctness at this batch, if checked
	ArenaMB   float64 `json:"arena_mb"`  // activation memory
	Layers    string  `json:"layers"`    // how the layers run
	Algos     string  `json:"algos"`     // the cuDNN algorithms and math types chosen, with counts
	WorkMB    float64 `json:"ws_mb"`     // library workspace per context
	GPU       string  `json:"gpu"`       // fingerprint
}

func benchInputs(model string, batch int, r *rand.Rand) map[string]*tensor.Tensor {
	if strings.HasPrefix(model, "bert") {
		ids := tensor.New(tensor.Int64, batch, 128)
		mask := tensor.New(tensor.Int64, batch, 128)
		for i := range ids.Int64s() {
			ids.Int64s()[i] = int64(r.IntN(30522))
			mask.Int64s()[i] = 1
		}
		return map[string]*tensor.Tensor{"input_ids": ids, "attention_mask": mask}
	}
	x := tensor.New(tensor.Float32, batch, 3, 224, 224)
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(r.NormFloat64())
	}
	return map[string]*tensor.Tensor{"input": x}
}

// TestGPUBench checks and times the models of $KILN_GPU_BENCH (a directory
// of exported models: resnet50, bert_base) at the batches of
// $KILN_GPU_BENCH_BATCHES ("resnet50=1,8,64,256;bert_base=1,8,32"), in
// float32 and float16. Correctness: at the test inputs (test_data_set_0)
// the GPU outputs against kiln's CPU float32 outputs and against PyTorch's
// (output_N.pb), float32 by largest relative difference, float16 by cosine
// similarity (at least 0.999). Rows go to $KILN_GPU_BENCH_OUT as JSON lines.
func TestGPUBench(t *testing.T) {
	dir := os.Getenv("KILN_GPU_BENCH")
	if dir == "" {
		t.Skip("set KILN_GPU_BENCH to a directory of exported models to benchmark them")
	}
	needGPU(t)
	fp, _ := cuda.Probe(cuda.Options{})
	iters := 20
	if v, err := strconv.Atoi(os.Getenv("KILN_GPU_BENCH_ITERS")); err == nil && v > 0 {
		iters = v
	}
	spec := os.Getenv("KILN_GPU_BENCH_BATCHES")
	if spec == "" {
		spec = "resnet50=1,8,64,256;bert_base=1,8,32"
	}
	var out *os.File
	if p := os.Getenv("KILN_GPU_BENCH_OUT"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out = f
	}
	emit := func(r benchRow) {
		r.GPU = fp.String()
		b, _ := json.Marshal(r)
		t.Logf("%s", b)
		if out != nil {
			out.Write(append(b, '\n'))
		}
	}
	median := func(v []float64) float64 {
		s := append([]float64{}, v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	for _, part := range strings.Split(spec, ";") {
		model, list, _ := strings.Cut(part, "=")
		path := filepath.Join(dir, model, "model.onnx")
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: %v", model, err)
			continue
		}
		// Correctness at the exported test inputs.
		t.Run(model+"/check", func(t *testing.T) {
			in := map[string]*tensor.Tensor{}
			names := []string{"input"}
			onames := []string{"output"}
			if strings.HasPrefix(model, "bert") {
				names, onames = []string{"input_ids", "attention_mask"}, []string{"last_hidden_state", "pooler_output"}
			}
			for i, n := range names {
				x, _, err := onnx.ReadTensorFile(filepath.Join(dir, model, "test_data_set_0", fmt.Sprintf("input_%d.pb", i)))
				if err != nil {
					t.Fatal(err)
				}
				in[n] = x
			}
			cpu := cpuRun(t, path, in)
			batch := in[names[0]].Shape[0]
			for _, half := range []bool{false, true} {
				e, err := NewEngine(optimizedGraph(t, path, in), Options{FP16: half})
				if err != nil {
					t.Fatal(err)
				}
				c, err := e.NewContext()
				if err != nil {
					e.Close()
					t.Fatal(err)
				}
				var got map[string]*tensor.Tensor
				for range 3 {
					if got, err = c.Run(context.Background(), in); err != nil {
						t.Fatal(err)
					}
				}
				c.Close()
				e.Close()
				var notes []string
				for i, on := range onames {
					g := got[on]
					torch, _, err := onnx.ReadTensorFile(filepath.Join(dir, model, "test_data_set_0", fmt.Sprintf("output_%d.pb", i)))
					if err != nil {
						t.Fatal(err)
					}
					for _, ref := range []struct {
						name string
						w    *tensor.Tensor
					}{{"kiln CPU fp32", cpu[on]}, {"PyTorch fp32", torch}} {
						cos, rel := cosine(g, ref.w)
						worst := 0.0
						for j := range ref.w.Len() {
							d := g.Float(j) - ref.w.Float(j)
							if d < 0 {
								d = -d
							}
							worst = max(worst, d)
						}
						notes = append(notes, fmt.Sprintf("%s vs %s: cos %.6f, rel L2 %.2g, max abs %.2g", on, ref.name, cos, rel, worst))
						if half && !(cos >= minCosine) {
							t.Errorf("fp16 %s vs %s: cosine %.6f < %g", on, ref.name, cos, minCosine)
						}
						if !half && !(rel < 1e-3) {
							t.Errorf("fp32 %s vs %s: relative L2 error %.3g", on, ref.name, rel)
						}
					}
				}
				prec := map[bool]string{false: "fp32", true: "fp16"}[half]
				emit(benchRow{Model: model, Batch: batch, Precision: prec, Check: strings.Join(notes, "; ")})
			}
		})
		for _, bs := range strings.Split(list, ",") {
			batch, err := strconv.Atoi(bs)
			if err != nil {
				t.Fatalf("batch %q", bs)
			}
			t.Run(fmt.Sprintf("%s/batch%d", model, batch), func(t *testing.T) {
				in := benchInputs(model, batch, rand.New(rand.NewPCG(uint64(batch), 3)))
				for _, half := range []bool{false, true} {
					start := time.Now()
					// tuned at the batch's shapes, as kiln build --device cuda
					// tunes at a profile's opt shapes (KILN_GPU_BENCH_NOTUNE=1:
					// the libraries' heuristics alone)
					e, err := NewEngine(optimizedGraph(t, path, in), Options{FP16: half, Tune: os.Getenv("KILN_GPU_BENCH_NOTUNE") == ""})
					if err != nil {
						t.Fatal(err)
					}
					c, err := e.NewContext()
					if err != nil {
						e.Close()
						t.Fatal(err)
					}
					for range 2 {
						if _, err := c.Run(context.Background(), in); err != nil {
							t.Fatal(err)
						}
					}
					build := time.Since(start).Seconds()
					if _, err := c.DeviceTimes(3); err != nil {
						t.Fatal(err)
					}
					dev, err := c.DeviceTimes(iters)
					if err != nil {
						t.Fatal(err)
					}
					var e2e []float64
					for range max(5, iters/4) {
						s := time.Now()
						if _, err := c.Run(context.Background(), in); err != nil {
							t.Fatal(err)
						}
						e2e = append(e2e, float64(time.Since(s).Microseconds())/1000)
					}
					layers := summarize(e.Layers())
					algos := map[string]int{}
					for _, l := range e.Layers() {
						if strings.HasPrefix(l.Impl, "cudnn") {
							algos[l.Impl]++
						}
					}
					var al []string
					for k, v := range algos {
						al = append(al, fmt.Sprintf("%s x%d", k, v))
					}
					sort.Strings(al)
					ws := float64(e.ws) / (1 << 20)
					arena := float64(e.ArenaBytes()) / (1 << 20)
					c.Close()
					e.Close()
					prec := map[bool]string{false: "fp32", true: "fp16"}[half]
					emit(benchRow{Model: model, Batch: batch, Precision: prec, DeviceMS: median(dev), EndToEnd: median(e2e),
						BuildS: build, ArenaMB: arena, Layers: layers, Algos: strings.Join(al, ", "), WorkMB: ws})
				}
			})
		}
	}
}

// profileLayers runs the context's layers once more, eagerly, with a CUDA
// event pair around each call, and returns the device milliseconds per
// "op=implementation" (a debugging aid; launch gaps are not counted).
func profileLayers(t *testing.T, c *Context) map[string]float64 {
	t.Helper()
	e := c.e
	layers := e.Layers()
	ms := callTimes(t, c)
	out := map[string]float64{}
	for i, k := range c.calls {
		l := layers[k.step]
		impl := l.Impl
		if k.lib == nil {
			for name, fn := range e.funcs {
				if fn == k.fn {
					impl = name
				}
			}
			if e.convs[k.step] != nil || e.gemms[k.step] != nil {
				impl = "epilogue " + impl
			}
		}
		if i := strings.Index(impl, " ("); i > 0 {
			impl = impl[:i]
		}
		out[l.Op+"="+impl] += ms[i]
	}
	return out
}

// profileSteps is profileLayers by node: the device milliseconds of each
// node's calls, summed.
func profileSteps(t *testing.T, c *Context) map[string]float64 {
	t.Helper()
	layers := c.e.Layers()
	ms := callTimes(t, c)
	out := map[string]float64{}
	for i, k := range c.calls {
		out[layers[k.step].Node] += ms[i]
	}
	return out
}

// layerTable is a markdown table of where the device time goes, layer by
// layer: each context's calls timed eagerly with an event pair around
// each (profileSteps; launch gaps not counted), beside e's precision and
// tactic for the layer; the contexts run the same graph (node names).
func layerTable(t *testing.T, e *Engine, labels []string, ctxs map[string]*Context) string {
	t.Helper()
	prof := map[string]map[string]float64{}
	sum := map[string]float64{}
	for _, l := range labels {
		prof[l] = profileSteps(t, ctxs[l])
		for _, v := range prof[l] {
			sum[l] += v
		}
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "| layer | op | %s: precision, tactic |", labels[0])
	for _, l := range labels {
		fmt.Fprintf(&tb, " %s us |", l)
	}
	tb.WriteString("\n| --- | --- | --- |" + strings.Repeat(" --- |", len(labels)) + "\n")
	for _, ly := range e.Layers() {
		fmt.Fprintf(&tb, "| %s | %s | %s %s |", ly.Node, ly.Op, ly.Precision, ly.Tactic)
		for _, l := range labels {
			fmt.Fprintf(&tb, " %.1f |", prof[l][ly.Node]*1e3)
		}
		tb.WriteString("\n")
	}
	tb.WriteString("| sum of the layers' calls, eager | | |")
	for _, l := range labels {
		fmt.Fprintf(&tb, " %.1f |", sum[l]*1e3)
	}
	return tb.String()
}

// callTimes runs the context's calls once, eagerly, with a CUDA event pair
// around each, and returns each call's device milliseconds.
func callTimes(t *testing.T, c *Context) []float64 {
	t.Helper()
	e := c.e
	d := e.drv
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.SetCurrent(e.cctx); err != nil {
		t.Fatal(err)
	}
	type pair struct{ a, b cuda.Event }
	var evs []pair
	defer func() {
		for _, p := range evs {
			d.EventDestroy(p.a)
			d.EventDestroy(p.b)
		}
	}()
	for _, k := range c.calls {
		a, err := d.EventCreate(0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := d.EventCreate(0)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, pair{a, b})
		d.EventRecord(a, c.stream)
		if k.lib != nil {
			err = k.lib()
		} else {
			err = d.Launch(k.fn, k.grid, k.block, k.shmem, c.stream, k.args)
		}
		if err != nil {
			t.Fatal(err)
		}
		d.EventRecord(b, c.stream)
	}
	if err := d.StreamSynchronize(c.stream); err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(c.calls))
	for i := range c.calls {
		ms, err := d.EventElapsed(evs[i].a, evs[i].b)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = float64(ms)
	}
	return out
}

// TestGPUProfile logs where the device time of one run goes, by op and
// implementation, for the models and batches of $KILN_GPU_PROFILE
// ("resnet50=64;bert_base=32", models under $KILN_GPU_BENCH), in FP16.
func TestGPUProfile(t *testing.T) {
	dir, spec := os.Getenv("KILN_GPU_BENCH"), os.Getenv("KILN_GPU_PROFILE")
	if dir == "" || spec == "" {
		t.Skip("set KILN_GPU_BENCH and KILN_GPU_PROFILE to profile models")
	}
	needGPU(t)
	for _, part := range strings.Split(spec, ";") {
		model, bs, _ := strings.Cut(part, "=")
		batch, err := strconv.Atoi(bs)
		if err != nil {
			t.Fatalf("batch %q", bs)
		}
		t.Run(fmt.Sprintf("%s/batch%d", model, batch), func(t *testing.T) {
			path := filepath.Join(dir, model, "model.onnx")
			in := benchInputs(model, batch, rand.New(rand.NewPCG(1, 1)))
			e, err := NewEngine(optimizedGraph(t, path, in), Options{FP16: true})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			c, err := e.NewContext()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Run(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			profileLayers(t, c) // warm
			prof := profileLayers(t, c)
			var keys []string
			total := 0.0
			for k, v := range prof {
				keys = append(keys, k)
				total += v
			}
			sort.Slice(keys, func(i, j int) bool { return prof[keys[i]] > prof[keys[j]] })
			var rows []string
			for _, k := range keys {
				rows = append(rows, fmt.Sprintf("%s %.3f ms (%.0f%%)", k, prof[k], 100*prof[k]/total))
			}
			t.Logf("profile %s batch %d fp16, %.3f ms in the calls: %s", model, batch, total, strings.Join(rows, "; "))
		})
	}
}
