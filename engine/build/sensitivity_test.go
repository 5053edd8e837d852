package build_test

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// outlierModel is three 1x1 convolutions over 8 channels (as in cmd/kiln's
// test of the same name): "spread" adds 500 to channel 0, "outlier" reads
// that channel with a small weight next to the seven others, which one
// per-tensor INT8 scale cannot hold together; "head" gives the output.
func outlierModel(t *testing.T) []byte {
	t.Helper()
	const c = 8
	b := ir.NewBuilder("outlier", 17)
	x := b.Input("x", tensor.Float32, ir.D(1), ir.D(c), ir.D(6), ir.D(6))
	conv := func(name string, in *ir.Value, out int, w func(o, i int) float32, bias func(o int) float32) *ir.Value {
		wt := tensor.New(tensor.Float32, out, c, 1, 1)
		bt := tensor.New(tensor.Float32, out)
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

// TestInt8SensitivityExecutorDevice is `kiln build --device cuda --int8
// --int8-min-cosine` on a device that compiles graphs itself (the fake GPU
// of compile_test.go): the layer the sensitivity analysis finds INT8 ruins
// gets no input scale (the device runs it in fp16), the other quantized
// convolution keeps its scale, the plan's layers say why, and the build
// log has the analysis; without the threshold both convolutions get
// scales, as before. From the calibration cache alone (no batches to
// calibrate on) the analysis runs on random batches.
func TestInt8SensitivityExecutorDevice(t *testing.T) {
	model := outlierModel(t)
	cache := filepath.Join(t.TempDir(), "calib.cache")
	for _, tt := range []struct {
		name   string
		o      build.Options
		scales []string
		logHas []string
	}{
		{"without the analysis", build.Options{CalibBatches: 3, CalibCache: cache}, []string{"outlier", "spread"}, []string{"INT8 on fakegpu: 2 convolutions get input scales"}},
		{"analysis", build.Options{CalibBatches: 3, Int8MinCosine: 0.99}, []string{"spread"},
			[]string{"on 3 of 3 calibration batches", "stays in fp16", "kept in fp16", "INT8 on fakegpu: 1 convolutions get input scales"}},
		{"analysis from the cache", build.Options{CalibCache: cache, Int8MinCosine: 0.99, SensitivityBatches: 1}, []string{"spread"},
			[]string{"ranges read from", "on 1 of 2 calibration batches", "kept in fp16"}},
		{"layer-precision wins", build.Options{CalibBatches: 2, Int8MinCosine: 0.99, LayerPrecision: map[string]string{"outlier": build.INT8}}, []string{"outlier", "spread"},
			[]string{"int8 (--layer-precision wins)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.Device, o.Devices, o.Precision = "fakegpu", fakeDevices, build.INT8
			var log []string
			o.Log = func(m string) { log = append(log, m) }
			res, err := build.BuildBytes(context.Background(), "outlier", model, o)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			all := strings.Join(log, "\n")
			for _, want := range tt.logHas {
				if !strings.Contains(all, want) {
					t.Errorf("the build log lacks %q:\n%s", want, all)
				}
			}
			if got := slices.Sorted(maps.Keys(lastCompiled().Int8Scales)); !slices.Equal(got, tt.scales) {
				t.Errorf("the device got input scales for %v, want %v", got, tt.scales)
			}
			reasons := map[string]string{}
			for _, l := range res.Header.Layers {
				reasons[l.Name] = l.Reason
			}
			kept := strings.HasPrefix(reasons["outlier"], "sensitivity: cosine ") && strings.HasSuffix(reasons["outlier"], ": fp16")
			if kept != (o.Int8MinCosine > 0 && o.LayerPrecision == nil) {
				t.Errorf("outlier's reason in the plan: %q", reasons["outlier"])
			}
			if !strings.HasPrefix(reasons["spread"], "input scale") || reasons["head"] != `produces graph output "y": fp16 on fakegpu` {
				t.Errorf("reasons in the plan: spread %q, head %q", reasons["spread"], reasons["head"])
			}
		})
	}
}
