package kiln_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// TestCUDAInt8SensitivityFake is `kiln build --device cuda --int8
// --int8-min-cosine 0.99` against the fake CUDA libraries: of the two
// convolutions the INT8 rule quantizes, the one the sensitivity analysis
// finds INT8 ruins ("outlier", which reads a channel 500 times larger than
// the others) gets no input scale in the plan's cuda.int8 section and runs
// in fp16, with the reason in the plan's layer; without the threshold both
// get scales.
func TestCUDAInt8SensitivityFake(t *testing.T) {
	t.Setenv(envCUDALibPath, fakeCUDA(t))
	for _, tt := range []struct {
		name   string
		k      int
		min    float64
		scales []string
	}{
		{"without the analysis", 1, 0, []string{"outlier", "spread"}},
		{"analysis", 1, 0.99, []string{"spread"}},
		{"3x3 without the analysis", 3, 0, []string{"outlier", "spread"}},
		{"3x3 analysis", 3, 0.99, []string{"spread"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			model := sensitiveConvsK(t, tt.k)
			o := build.Options{Device: "cuda", Precision: build.INT8, CalibBatches: 2, NoTiming: true, Int8MinCosine: tt.min}
			res, err := build.BuildBytes(context.Background(), "outlier", model, o)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			var section struct {
				Scales map[string]float32 `json:"scales"`
			}
			for _, b := range res.Blobs {
				if b.Name == "cuda.int8" {
					if err := json.Unmarshal(b.Data, &section); err != nil {
						t.Fatalf("cuda.int8: %v", err)
					}
				}
			}
			if got := slices.Sorted(maps.Keys(section.Scales)); !slices.Equal(got, tt.scales) {
				t.Errorf("the plan's cuda.int8 section has scales for %v, want %v", got, tt.scales)
			}
			for _, l := range res.Header.Layers {
				if l.Name != "outlier" {
					continue
				}
				t.Logf("outlier: %s on %s, %s", l.Precision, l.Device, l.Reason)
				if tt.min > 0 && (l.Precision != build.FP16 || !strings.HasPrefix(l.Reason, "sensitivity: cosine ")) {
					t.Errorf("outlier kept by the analysis runs in %s (%s), want fp16", l.Precision, l.Reason)
				}
			}
		})
	}
}

// TestCUDAInt8SensitivityOnGPU is `kiln build --device cuda --int8
// --int8-min-cosine` on a real GPU: on the 3x3 form of the outlier model
// (which the GPU runs in INT8 untuned) the accuracy report against FP32
// goes from ruined to good, the kept layer has no scale; on resnet_mini
// the analysis runs and the build's accuracy does not get worse. It logs
// the build logs' analysis tables and the analysis's time. It skips
// without a usable GPU (or with the fake libraries selected).
func TestCUDAInt8SensitivityOnGPU(t *testing.T) {
	if os.Getenv(envCUDALibPath) != "" {
		t.Skipf("%s is set (the fake CUDA libraries): this test needs a real GPU", envCUDALibPath)
	}
	type built struct {
		cosine float64
		scales []string
		log    string
		took   float64
	}
	buildOne := func(t *testing.T, model []byte, name string, o build.Options) built {
		var log []string
		o.Device, o.Precision = "cuda", build.INT8
		o.Log = func(m string) { log = append(log, m) }
		res, err := build.BuildBytes(context.Background(), name, model, o)
		if errors.Is(err, device.ErrUnavailable) {
			t.Skipf("needs a CUDA GPU: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		var r built
		var section struct {
			Scales map[string]float32 `json:"scales"`
		}
		for _, b := range res.Blobs {
			if b.Name == "cuda.int8" {
				if err := json.Unmarshal(b.Data, &section); err != nil {
					t.Fatalf("cuda.int8: %v", err)
				}
			}
		}
		r.scales = slices.Sorted(maps.Keys(section.Scales))
		var acc struct {
			Outputs []struct {
				Cosine float64 `json:"cosine"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(res.Header.Accuracy, &acc); err != nil || len(acc.Outputs) == 0 {
			t.Fatalf("accuracy report %s: %v", res.Header.Accuracy, err)
		}
		r.cosine = 1
		for _, o := range acc.Outputs {
			r.cosine = min(r.cosine, o.Cosine)
		}
		for _, s := range res.Timings {
			if strings.HasSuffix(s.Name, ": sensitivity") {
				r.took = s.Time.Seconds()
			}
		}
		var lines []string
		for _, l := range log {
			if strings.Contains(l, "sensitivity") || strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "  accuracy") {
				lines = append(lines, l)
			}
		}
		r.log = strings.Join(lines, "\n")
		return r
	}
	t.Run("outlier 3x3", func(t *testing.T) {
		model := sensitiveConvsK(t, 3)
		o := build.Options{CalibBatches: 4, NoTiming: true}
		before := buildOne(t, model, "outlier", o)
		o.Int8MinCosine = 0.99
		after := buildOne(t, model, "outlier", o)
		t.Logf("accuracy cosine on the GPU: %.6f without the analysis (scales %v), %.6f with it (scales %v, analysis %.2f s)\n%s", before.cosine, before.scales, after.cosine, after.scales, after.took, after.log)
		if !slices.Equal(after.scales, []string{"spread"}) || !slices.Equal(before.scales, []string{"outlier", "spread"}) {
			t.Errorf("scales %v with the analysis, %v without: want [spread] and [outlier spread]", after.scales, before.scales)
		}
		if after.cosine < 0.999 || !(after.cosine > before.cosine) {
			t.Errorf("accuracy cosine %.6f with the analysis, %.6f without: want an improvement to at least 0.999", after.cosine, before.cosine)
		}
	})
	t.Run("resnet_mini", func(t *testing.T) {
		dir := filepath.Join("..", "shared", "models")
		if d := os.Getenv("KILN_MODELS"); d != "" {
			dir = d
		}
		model, err := os.ReadFile(filepath.Join(dir, "resnet_mini", "model.onnx"))
		if err != nil {
			t.Skipf("needs the reference model resnet_mini (../shared/models or $KILN_MODELS): %v", err)
		}
		o := build.Options{CalibBatches: 8}
		before := buildOne(t, model, "resnet_mini", o)
		o.Int8MinCosine = 0.9999
		after := buildOne(t, model, "resnet_mini", o)
		t.Logf("resnet_mini on the GPU, tuned: accuracy cosine %.6f without the analysis (%d scales), %.6f with it (%d scales; analysis %.2f s)\n%s", before.cosine, len(before.scales), after.cosine, len(after.scales), after.took, after.log)
		if after.took == 0 || len(after.scales) > len(before.scales) {
			t.Errorf("the analysis took %v s and left %d of %d scales", after.took, len(after.scales), len(before.scales))
		}
	})
}

// sensitiveConvsK (k = 1) is the model of cmd/kiln's outlierModel: "spread" adds
// 500 to channel 0 of its 8, "outlier" mixes that channel (weight 0.004)
// with the others, "head" gives the output.
// sensitiveConvsK is that model with k x k kernels (k odd, "same"
// padding) whose taps other than the centre are zero: the same values,
// for a device whose INT8 kernels take larger kernels first.
func sensitiveConvsK(t *testing.T, k int) []byte {
	t.Helper()
	const c = 8
	b := ir.NewBuilder("outlier", 17)
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(c), ir.D(6), ir.D(6))
	conv := func(name string, in *ir.Value, out int, w func(o, i int) float32, bias func(o int) float32) *ir.Value {
		wt, bt := tensor.New(tensor.Float32, out, c, k, k), tensor.New(tensor.Float32, out)
		for o := range out {
			for i := range c {
				wt.Float32s()[((o*c+i)*k+k/2)*k+k/2] = w(o, i)
			}
			bt.Float32s()[o] = bias(o)
		}
		p := int64(k / 2)
		v := b.Op("Conv", []*ir.Value{in, b.Const(name+".w", wt), b.Const(name+".b", bt)}, ir.IntsAttr("pads", p, p, p, p))
		v.Producer.Name = name
		return v
	}
	spread := conv("spread", x, c, func(o, i int) float32 { return map[bool]float32{true: 1}[o == i] },
		func(o int) float32 { return map[bool]float32{true: 500}[o == 0] })
	outlier := conv("outlier", spread, c, func(o, i int) float32 {
		if i == 0 {
			return 0.004
		}
		return float32((o+2*i)%5-2) * 0.5
	}, func(int) float32 { return 0 })
	b.Output(conv("head", outlier, 4, func(o, i int) float32 { return float32((3*o+i)%7-3) * 0.3 }, func(o int) float32 { return 0.1 * float32(o) }), "y")
	mp, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return mp.Marshal()
}
