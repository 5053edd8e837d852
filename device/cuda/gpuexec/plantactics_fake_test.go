package gpuexec_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/tensor"
)

// fakeLtAlgo returns a function that reports the algorithm (its id: 42,
// 43 or 44) the fake libcublasLt of dir last ran (fakeLtLastAlgo), 0 when
// it ran none. The library stays open until the test ends, so that what
// it records survives the engines that open and close it.
func fakeLtAlgo(t *testing.T, dir string) func() int {
	t.Helper()
	h, err := purego.Dlopen(filepath.Join(dir, "libcublasLt.so.13"), purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { purego.Dlclose(h) })
	fn, err := purego.Dlsym(h, "fakeLtLastAlgo")
	if err != nil {
		t.Fatal(err)
	}
	return func() int {
		var algo [64]byte
		purego.SyscallN(fn, uintptr(unsafe.Pointer(&algo[0])))
		return int(algo[0])
	}
}

// TestPlanTacticsFake: kiln build --device cuda against the fake
// libraries keeps the GPU's choices in the plan's header, each by a name
// the GPU parses back (gpuexec.ParseTactic) with its layer's signature,
// and the plan has no "cuda.tactics" or "cpu.tactics" section; kiln.Load
// hands the header's choices back to the device, which applies them
// without timing: cuBLASLt is asked to run the algorithm the header names
// (the heuristic's second, made fastest through the timing cache), not the
// heuristic's first, which a plan without choices runs. A plan written the
// old way (the choices in the device's and the CPU segment's sections,
// none in the header) loads and chooses the same. Both with every layer on
// the GPU and partitioned (the convolution on the CPU).
func TestPlanTacticsFake(t *testing.T) {
	for _, tc := range []struct {
		name        string
		partitioned bool
	}{{"one segment", false}, {"partitioned", true}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.partitioned {
				gpuexec.WithoutFusedKernel(t, "FusedConv")
			}
			dir := gpuexec.FakeLibs(t)
			t.Setenv(cuda.EnvLibPath, dir)
			lastAlgo := fakeLtAlgo(t, dir)
			model := convMatMulNet(t)
			cachePath := filepath.Join(t.TempDir(), "kiln.timing")
			first, _ := buildCUDA(t, "convmm", model, build.Options{TimingCache: cachePath})
			gemm, conv := gpuChoice(t, first.Header, "kiln::FusedMatMul", "Gemm"), ""
			if !tc.partitioned {
				conv = gpuChoice(t, first.Header, "kiln::FusedConv").Layer
			}
			// The heuristic's second result made fastest: a second build
			// with the timing cache chooses it.
			lt, err := gpuexec.ParseTactic(gemm.Name)
			if err != nil || lt.Impl != gpuexec.ImplCUBLASLt || lt.Algo != 0 || lt.Cfg != "" {
				t.Fatalf("first build chose %q for %s (%+v, %v), want the heuristic's first", gemm.Name, gemm.Layer, lt, err)
			}
			second := strings.TrimSuffix(gemm.Name, "0") + "1"
			fp, err := cuda.FingerprintOf(0)
			if err != nil {
				t.Fatal(err)
			}
			cache, err := tactic.Open(cachePath)
			if err != nil {
				t.Fatal(err)
			}
			cache.Store(fp, gemm.Sig, second, time.Nanosecond)
			if err := cache.Save(); err != nil {
				t.Fatal(err)
			}
			res, _ := buildCUDA(t, "convmm", model, build.Options{TimingCache: cachePath})
			if got := gpuChoice(t, res.Header, "kiln::FusedMatMul", "Gemm"); got.Name != second || got.Sig != gemm.Sig {
				t.Fatalf("with the timing cache %s chose %q (%s), want %q", got.Layer, got.Name, got.Sig, second)
			}
			var gpuPrefix string // the device segment's section prefix
			for _, b := range res.Blobs {
				if strings.HasSuffix(b.Name, "cuda.tactics") || strings.HasSuffix(b.Name, partition.CPUTacticsBlob) {
					t.Errorf("the plan has section %s: the choices belong in the header", b.Name)
				}
				if p, ok := strings.CutSuffix(b.Name, "layers"); ok && !strings.Contains(p, "profile") {
					gpuPrefix = p
				}
			}
			in := map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 1, 3, 8, 8)} // the opt shape
			run := func(what string, res *build.Result, want int) {
				t.Helper()
				m := loadPlan(t, res)
				runShapes(t, m, in, map[string]string{"y": "1x16"})
				if got := lastAlgo(); got != want {
					t.Errorf("%s: cuBLASLt ran algorithm %d, want %d", what, got, want)
				}
			}
			run("the plan", res, 43)

			// The same plan written the old way.
			oldTactics := gpuexec.Tactics{}
			cpuTactics := map[string]partition.CPUTactic{}
			onCPU := map[string]bool{}
			for _, l := range res.Header.Layers {
				onCPU[l.Name] = l.Device == "cpu"
			}
			var stripped [][]plan.Tactic
			for _, set := range res.Header.Tactics {
				var s []plan.Tactic
				for _, pt := range set {
					if pt.Name != "" {
						tt, err := gpuexec.ParseTactic(pt.Name)
						if err != nil {
							t.Fatalf("layer %s: %v", pt.Layer, err)
						}
						tt.Sig = pt.Sig
						oldTactics[pt.Layer] = tt
					} else if onCPU[pt.Layer] {
						cpuTactics[pt.Layer] = partition.CPUTactic{Tactic: pt.Tactic, NS: int64(pt.Time)}
					}
					pt.Name, pt.Sig = "", ""
					s = append(s, pt)
				}
				stripped = append(stripped, s)
			}
			if conv != "" && oldTactics[conv].Impl != gpuexec.ImplCUDNN {
				t.Errorf("convolution %s: %+v, want a cuDNN choice", conv, oldTactics[conv])
			}
			cpuSection, err := json.Marshal(cpuTactics)
			if err != nil {
				t.Fatal(err)
			}
			old := *res
			old.Header.Tactics = stripped
			old.Blobs = append(append([]plan.Blob(nil), res.Blobs...), plan.Blob{Name: gpuPrefix + "cuda.tactics", Data: oldTactics.Marshal()})
			if tc.partitioned {
				if len(cpuTactics) != 1 {
					t.Fatalf("the CPU's choices %v, want the convolution's", cpuTactics)
				}
				old.Blobs = append(old.Blobs, plan.Blob{Name: "segment0/" + partition.CPUTacticsBlob, Data: cpuSection})
			}
			run("the plan written the old way", &old, 43)
			// Without the choices: the heuristic's first.
			none := *res
			none.Header.Tactics = stripped
			run("the plan without choices", &none, 42)
		})
	}
}

// gpuChoice returns the entry of h's tactic table for the one layer of
// op (or the other ops) that carries the GPU's choice.
func gpuChoice(t *testing.T, h plan.Header, ops ...string) plan.Tactic {
	t.Helper()
	layers := map[string]bool{}
	for _, l := range h.Layers {
		for _, op := range ops {
			if l.Op == op {
				layers[l.Name] = true
			}
		}
	}
	if len(h.Tactics) != 1 {
		t.Fatalf("%d tactic sets, want 1", len(h.Tactics))
	}
	var found []plan.Tactic
	for _, pt := range h.Tactics[0] {
		if layers[pt.Layer] {
			found = append(found, pt)
		}
	}
	if len(found) != 1 || found[0].Name == "" || found[0].Sig == "" {
		t.Fatalf("tactic table entries of %v: %+v, want one with a name and a signature", ops, found)
	}
	if _, err := gpuexec.ParseTactic(found[0].Name); err != nil {
		t.Fatal(err)
	}
	return found[0]
}
