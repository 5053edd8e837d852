package gpuexec

import (
	"context"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/tensor"
)

// TestTuneOnGPU tunes models on the GPU (float32) and checks that the tuned
// engine's outputs equal the untuned engine's (rtol 1e-3 / atol 1e-4), that
// a second tuned engine with the same timing cache measures nothing and
// chooses the same, and times both engines (device time of the layers,
// CUDA events around a replay of their CUDA graph, median of 50). The table
// goes to the log and to $KILN_GPU_TUNE_OUT when set.
func TestTuneOnGPU(t *testing.T) {
	needGPU(t)
	fp, _ := cuda.Probe(cuda.Options{})
	cfp := device.Fingerprint{"gpu": fp.String()}
	rows := []string{"GPU: " + fp.String(), "",
		"| model | input | tuning s | timings measured, layers tuned | cuDNN / cuBLASLt not first, kiln kernel chosen | untuned ms | tuned ms | largest difference |",
		"| --- | --- | --- | --- | --- | --- | --- | --- |"}
	for _, mb := range []struct {
		model string
		batch int // 0: the test inputs
	}{{"resnet_mini", 1}, {"resnet_mini", 32}, {"mobilenet_v2", 32}, {"bert_mini", 0}} {
		name := fmt.Sprintf("%s/%d", mb.model, mb.batch)
		t.Run(name, func(t *testing.T) {
			path := modelPath(t, mb.model)
			in := testInputs(t, mb.model)
			if mb.batch > 0 {
				in = randomImages(t, mb.model, mb.batch, 7)
			}
			g := optimizedGraph(t, path, in)
			run := func(opt Options) (*Engine, map[string]*tensor.Tensor, float64) {
				e, err := NewEngine(g, opt)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { e.Close() })
				c, err := e.NewContext()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				var out map[string]*tensor.Tensor
				for range 3 {
					if out, err = c.Run(context.Background(), in); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := c.DeviceTimes(5); err != nil {
					t.Fatal(err)
				}
				ms, err := c.DeviceTimes(50)
				if err != nil {
					t.Fatal(err)
				}
				sort.Float64s(ms)
				return e, out, ms[len(ms)/2]
			}
			_, want, plainMS := run(Options{})
			cache := tactic.New()
			start := time.Now()
			e, got, tunedMS := run(Options{Tune: true, TimingCache: cache, CacheDevice: cfp})
			tuning := time.Since(start).Seconds()
			worst := 0.0
			for n, w := range want {
				worst = max(worst, compareFloat32(t, name+" "+n, got[n], w, rtol, atol))
			}
			e2, err := NewEngine(g, Options{Tune: true, TimingCache: cache, CacheDevice: cfp})
			if err != nil {
				t.Fatal(err)
			}
			defer e2.Close()
			if e2.Measured() != 0 || !reflect.DeepEqual(e2.Tactics(), e.Tactics()) {
				t.Errorf("second tuning with the cache: measured %d, same tactics %v", e2.Measured(), reflect.DeepEqual(e2.Tactics(), e.Tactics()))
			}
			var notFirst, kernel int
			var changed []string
			for n, tt := range e.Tactics() {
				switch {
				case tt.Impl == ImplKernel:
					kernel++
					changed = append(changed, fmt.Sprintf("%s: kernel %.1f us", n, float64(tt.NS)/1e3))
				case tt.Impl == ImplCUBLASLt && tt.Algo != 0:
					notFirst++
					changed = append(changed, fmt.Sprintf("%s: cublaslt #%d %.1f us", n, tt.Algo, float64(tt.NS)/1e3))
				case tt.Impl == ImplCUDNN:
					for i, s := range e.prog.steps {
						if s.node.Name == n && e.convs[i] != nil && e.convs[i].Candidates[0].Algo != tt.Algo {
							notFirst++
							changed = append(changed, fmt.Sprintf("%s: cudnn algo %d %.1f us", n, tt.Algo, float64(tt.NS)/1e3))
						}
					}
				}
			}
			sort.Strings(changed)
			t.Logf("%s: %d tactics, %d measured, tuning %.2f s, kept the first choices (network slower) %v; changed: %s", name, len(e.Tactics()), e.Measured(), tuning, e.reverted, strings.Join(changed, "; "))
			// Every layer that launches something has its device time (kiln
			// inspect's time column); the slowest, against the network.
			var sum time.Duration
			var timed []Layer
			for i, l := range e.Layers() {
				s := e.prog.steps[i]
				if synthetic(s) || (len(s.launches) == 0 && s.conv == nil && s.gemm == nil) {
					continue
				}
				if l.Time <= 0 || l.Tactic == "" {
					t.Errorf("%s layer %s: time %v, tactic %q", name, l.Node, l.Time, l.Tactic)
				}
				sum += l.Time
				timed = append(timed, l)
			}
			sort.Slice(timed, func(i, j int) bool { return timed[i].Time > timed[j].Time })
			var slowest []string
			for _, l := range timed[:min(5, len(timed))] {
				slowest = append(slowest, fmt.Sprintf("%s %.1f us (%s)", l.Node, float64(l.Time)/1e3, l.Tactic))
			}
			t.Logf("%s: %d layers timed alone sum to %.3f ms, the network replays in %.3f ms; slowest: %s", name, len(timed), float64(sum)/1e6, tunedMS, strings.Join(slowest, "; "))
			var shapes []string
			for n, x := range in {
				shapes = append(shapes, n+" "+tensor.ShapeString(x.Shape))
			}
			sort.Strings(shapes)
			rows = append(rows, fmt.Sprintf("| %s | %s | %.2f | %d, %d | %d, %d | %.3f | %.3f | %.1e |",
				mb.model, strings.Join(shapes, ", "), tuning, e.Measured(), len(e.Tactics()), notFirst, kernel, plainMS, tunedMS, worst))
		})
	}
	// Through the device's Compiler, as kiln build and load do: the
	// choices of a tuned build (its layer report, which the plan's header
	// keeps), loaded without timing, are chosen again and give the same
	// outputs.
	t.Run("plan", func(t *testing.T) {
		path := modelPath(t, "resnet_mini")
		in := randomImages(t, "resnet_mini", 4, 9)
		g := optimizedGraph(t, path, in)
		cachePath := t.TempDir() + "/timing.json"
		outs := func(o device.ExecOptions) (map[string]*tensor.Tensor, *planProgram) {
			prog, err := compilePlan(g, o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { prog.Close() })
			out, err := prog.Run(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			return out, prog.(*planProgram)
		}
		want, _ := outs(device.ExecOptions{})
		tunedOut, tuned := outs(device.ExecOptions{Tune: true, TimingCache: cachePath})
		_, again := outs(device.ExecOptions{Tune: true, TimingCache: cachePath})
		loadedOut, loaded := outs(device.ExecOptions{Blobs: tuned.Blobs(), Tactics: programChoices(t, tuned)})
		if tuned.measured == 0 || again.measured != 0 || loaded.measured != 0 {
			t.Errorf("measured %d, then %d with the cache, %d at load", tuned.measured, again.measured, loaded.measured)
		}
		for n, w := range want {
			compareFloat32(t, "tuned "+n, tunedOut[n], w, rtol, atol)
			compareFloat32(t, "loaded "+n, loadedOut[n], w, rtol, atol)
		}
		if got, want := programChoices(t, loaded), programChoices(t, tuned); !reflect.DeepEqual(got, want) {
			t.Errorf("loaded with choices %v, tuned %v", got, want)
		}
		t.Logf("plan: %d timings measured, %d choices", tuned.measured, len(programChoices(t, tuned)))
	})
	table := strings.Join(rows, "\n") + "\n"
	t.Log("\n" + table)
	if p := os.Getenv("KILN_GPU_TUNE_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// TestChooseStepsOnGPU tunes models on the GPU with checkChoices: every
// step's choice through tactic.Choose is the one the tuner's former loop
// makes on the same measurements (the real ones, replayed) and the same
// timing cache, in float32, in float16, and with the wider search of
// --opt-level 3 (cuDNN graph engines, enumerated cuBLASLt configurations);
// each twice, timed and then from the timing cache.
func TestChooseStepsOnGPU(t *testing.T) {
	needGPU(t)
	fp, _ := cuda.Probe(cuda.Options{})
	cfp := device.Fingerprint{"gpu": fp.String()}
	for _, tc := range []struct {
		model string
		batch int // 0: the test inputs
		opt   Options
	}{
		{"resnet_mini", 1, Options{}},
		{"resnet_mini", 32, Options{}},
		{"resnet_mini", 32, Options{FP16: true}},
		{"resnet_mini", 8, Options{FP16: true, GraphConv: true}},
		{"mobilenet_v2", 32, Options{}},
		{"mobilenet_v2", 8, Options{FP16: true}},
		{"bert_mini", 0, Options{}},
		{"bert_mini", 0, Options{FP16: true}},
	} {
		name := fmt.Sprintf("%s/%d/fp16=%v,graphconv=%v", tc.model, tc.batch, tc.opt.FP16, tc.opt.GraphConv)
		t.Run(name, func(t *testing.T) {
			in := testInputs(t, tc.model)
			if tc.batch > 0 {
				in = randomImages(t, tc.model, tc.batch, 7)
			}
			g := optimizedGraph(t, modelPath(t, tc.model), in)
			cache := tactic.New()
			opt := tc.opt
			opt.Tune, opt.TimingCache, opt.CacheDevice = true, cache, cfp
			for _, pass := range []string{"timed", "from the cache"} {
				var tactics Tactics
				steps, measured := checkChoices(t, func() {
					e, err := NewEngine(g, opt)
					if err != nil {
						t.Fatal(err)
					}
					tactics = e.Tactics()
					e.Close()
				})
				if steps == 0 || (pass == "timed") != (measured > 0) {
					t.Errorf("%s: %d steps compared, %d candidates measured", pass, steps, measured)
				}
				var kinds []string
				for _, n := range slices.Sorted(maps.Keys(tactics)) {
					kinds = append(kinds, n+"="+tactics[n].name())
				}
				t.Logf("%s: %d steps chose as the former loop, %d candidates measured; chosen: %s", pass, steps, measured, strings.Join(kinds, " "))
			}
		})
	}
}
