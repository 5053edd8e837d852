package kiln_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

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
	model := sensitiveConvs(t)
	for _, tt := range []struct {
		name   string
		min    float64
		scales []string
	}{
		{"without the analysis", 0, []string{"outlier", "spread"}},
		{"analysis", 0.99, []string{"spread"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
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

// sensitiveConvs is the model of cmd/kiln's outlierModel: "spread" adds
// 500 to channel 0 of its 8, "outlier" mixes that channel (weight 0.004)
// with the others, "head" gives the output.
func sensitiveConvs(t *testing.T) []byte {
	t.Helper()
	const c = 8
	b := ir.NewBuilder("outlier", 17)
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(c), ir.D(6), ir.D(6))
	conv := func(name string, in *ir.Value, out int, w func(o, i int) float32, bias func(o int) float32) *ir.Value {
		wt, bt := tensor.New(tensor.Float32, out, c, 1, 1), tensor.New(tensor.Float32, out)
		for o := range out {
			for i := range c {
				wt.Float32s()[o*c+i] = w(o, i)
			}
			bt.Float32s()[o] = bias(o)
		}
		v := b.Op("Conv", []*ir.Value{in, b.Const(name+".w", wt), b.Const(name+".b", bt)})
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
