package gpuexec_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/conformance"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/tensor"
)

// precisionModelsDir is where the shared models are: KILN_MODELS, else
// ../shared/models from the repository root.
func precisionModelsDir() string {
	if d := os.Getenv("KILN_MODELS"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "..", "shared", "models")
}

// minFP16Cosine is the FP16 tolerance of the GPU criteria (issue 10):
// every output's cosine similarity with the CPU's FP32 output.
const minFP16Cosine = 0.9999

// cosineOf is the cosine similarity of two float tensors.
func cosineOf(a, b *tensor.Tensor) float64 {
	var ab, aa, bb float64
	for i := range b.Len() {
		x, y := a.Float(i), b.Float(i)
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 && bb == 0 {
		return 1
	}
	return ab / math.Sqrt(aa*bb)
}

// TestLayerPrecisionOnGPU builds shared models for cuda in FP16 as kiln
// build does (tactics timed) twice: as the precision stage decides alone,
// and with layers forced to FP32 (--layer-precision NAME:fp32), and runs
// both plans through kiln.Load against the CPU's FP32 engine on the
// model's test inputs (three runs: eager, capture, replay): every output's
// cosine similarity at least 0.9999 (the FP16 tolerance) in both. The
// forced plan shows each forced layer in fp32 and the others in fp16
// (kiln inspect's precision column, from the device's report), keeps the
// decision in its cuda.precision section, and the plain plan shows no
// fp32 layer. Short (two mini models), bounded by a deadline; it skips
// without a GPU.
//
// Here: CGO_ENABLED=0 go test -c -trimpath -ldflags='-s -w' -o .gpubin/gpuexec.test ./device/cuda/gpuexec
// there: KILN_MODELS=<../shared/models> .gpubin/gpuexec.test -test.run 'TestLayerPrecisionOnGPU' -test.v -test.timeout 200s
func TestLayerPrecisionOnGPU(t *testing.T) {
	if _, err := cuda.FingerprintOf(0); err != nil {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	checkLayerPrecision(t, false)
}

// TestLayerPrecisionFake is TestLayerPrecisionOnGPU against the fake CUDA
// libraries, which compute nothing: the builds, the plans' decisions and
// sections and the runs' output shapes, not the values.
func TestLayerPrecisionFake(t *testing.T) {
	fakeCUDA(t)
	checkLayerPrecision(t, true)
}

// checkLayerPrecision is TestLayerPrecisionOnGPU; fake skips the
// comparison of values.
func checkLayerPrecision(t *testing.T, fake bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cases := []struct {
		model string
		// force picks the layers to keep in fp32 from the plain plan's
		// layers: the n-th (from 0) layers of op types
		force map[string]int
	}{
		{"resnet_mini", map[string]int{"kiln::FusedConv": 2}},
		{"bert_mini", map[string]int{"kiln::Attention": 0, "LayerNormalization": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.model, func(t *testing.T) {
			dir := filepath.Join(precisionModelsDir(), tc.model)
			path := filepath.Join(dir, "model.onnx")
			if _, err := os.Stat(path); err != nil {
				t.Skipf("needs the shared model %s (KILN_MODELS): %v", tc.model, err)
			}
			cpu, err := kiln.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer cpu.Close()
			in, _, err := conformance.LoadDataSet(cpu, filepath.Join(dir, "test_data_set_0"))
			if err != nil {
				t.Fatal(err)
			}
			want, err := cpu.Run(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			run := func(name string, layers map[string]string) *plan.Header {
				start := time.Now()
				res, err := build.Build(ctx, path, build.Options{Device: "cuda", Precision: "fp16", LayerPrecision: layers,
					TimingCache: filepath.Join(t.TempDir(), "kiln.timing")})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				defer res.Close()
				for _, n := range res.Header.Notes {
					if strings.Contains(n, "FP16 on cuda") || strings.Contains(n, "  fp32  ") || strings.Contains(n, "cosine") {
						t.Logf("%s build: %s", name, n)
					}
				}
				hasSection := false
				for _, b := range res.Blobs {
					hasSection = hasSection || strings.HasSuffix(b.Name, "cuda.precision")
				}
				if hasSection != (len(layers) > 0) {
					t.Errorf("%s: cuda.precision section %v, want %v", name, hasSection, len(layers) > 0)
				}
				p := filepath.Join(t.TempDir(), tc.model+".plan")
				if err := res.WriteFile(p); err != nil {
					t.Fatal(err)
				}
				m, err := kiln.Load(p)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				for r := 0; r < 3; r++ {
					got, err := m.Run(ctx, in)
					if err != nil {
						t.Fatalf("%s run %d: %v", name, r, err)
					}
					for o, w := range want {
						g := got[o]
						if g == nil || g.Len() != w.Len() {
							t.Fatalf("%s run %d: output %s is %v, want %v", name, r, o, g, w.Shape)
						}
						if w.DType != tensor.Float32 || fake {
							continue
						}
						c := cosineOf(g, w)
						if !(c >= minFP16Cosine) {
							t.Errorf("%s run %d: output %s cosine %.7f < %g", name, r, o, c, minFP16Cosine)
						}
						if r == 2 {
							t.Logf("%s: output %s cosine %.7f against the CPU's fp32", name, o, c)
						}
					}
				}
				t.Logf("%s: built and run in %v", name, time.Since(start).Round(time.Millisecond))
				h := *m.Plan()
				return &h
			}
			plain := run("fp16", nil)
			layers := map[string]string{}
			seen := map[string]int{}
			for _, l := range plain.Layers {
				if l.Precision == "fp32" {
					t.Errorf("fp16: layer %s (%s) in fp32 without a forced layer", l.Name, l.Op)
				}
				if n, ok := tc.force[l.Op]; ok {
					if seen[l.Op] == n {
						layers[l.Name] = "fp32"
					}
					seen[l.Op]++
				}
			}
			if len(layers) != len(tc.force) {
				t.Fatalf("found %v of the layers to force %v", layers, tc.force)
			}
			forced := run("fp16 with "+strings.Join(sortedKeys(layers), ", ")+" in fp32", layers)
			fp32, fp16 := 0, 0
			for _, l := range forced.Layers {
				switch {
				case layers[l.Name] != "":
					if l.Precision != "fp32" {
						t.Errorf("forced layer %s (%s) shows %q, want fp32", l.Name, l.Op, l.Precision)
					} else {
						t.Logf("forced layer %s (%s): %s, %s", l.Name, l.Op, l.Precision, l.Reason)
					}
					fp32++
				case l.Precision == "fp32":
					t.Errorf("layer %s (%s) in fp32, not forced", l.Name, l.Op)
				case l.Precision == "fp16":
					fp16++
				}
			}
			t.Logf("forced plan: %d layers fp32, %d fp16", fp32, fp16)
		})
	}
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
