package build_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
)

// TestInt8ExecutorDevice builds TinyCNN with --int8 for a device that
// compiles graphs itself (the fake GPU of compile_test.go), the way
// `kiln build --device cuda --int8` does: the build calibrates, applies the
// INT8 rule, hands the device Precision "int8" with the input scale of each
// convolution the rule quantizes (not the first layer, which reads the
// 3-channel image), stores the accuracy report, and writes and reads the
// calibration cache; --layer-precision keeps a layer out of INT8.
func TestInt8ExecutorDevice(t *testing.T) {
	model, convs := tinyCNNFile(t)
	dir := filepath.Dir(model)
	cache := filepath.Join(dir, "calib.cache")
	for _, tt := range []struct {
		name   string
		o      build.Options
		logHas string
	}{
		{"random calibration, cache written", build.Options{CalibBatches: 3, CalibCache: cache}, "calibration (entropy)"},
		{"from the cache", build.Options{CalibCache: cache}, "ranges read from"},
		{"minmax", build.Options{CalibBatches: 2, CalibMethod: "minmax"}, "calibration (minmax)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.Device, o.Devices, o.Precision = "fakegpu", fakeDevices, build.INT8
			var log []string
			o.Log = func(m string) { log = append(log, m) }
			res, err := build.Build(context.Background(), model, o)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			all := strings.Join(log, "\n")
			if !strings.Contains(all, tt.logHas) || !strings.Contains(all, "INT8 on fakegpu: 1 convolutions get input scales") {
				t.Errorf("build log lacks %q or the INT8 summary:\n%s", tt.logHas, all)
			}
			if len(res.Header.Accuracy) == 0 {
				t.Error("no accuracy report in the plan")
			}
			last := lastCompiled()
			if last.Precision != build.INT8 {
				t.Errorf("the device compiled with precision %q, want int8", last.Precision)
			}
			// the second convolution: the first reads the image (3 channels)
			names := slices.Sorted(maps.Keys(last.Int8Scales))
			if len(names) != 1 || names[0] != convs[1] {
				t.Errorf("input scales for %v, want the second convolution %q only", names, convs[1])
			}
			for n, s := range last.Int8Scales {
				if !(s > 0) {
					t.Errorf("%s: scale %g", n, s)
				}
			}
			if _, err := os.Stat(cache); err != nil {
				t.Errorf("calibration cache: %v", err)
			}
		})
	}
	// --layer-precision keeps the quantized convolution in float
	quantized := slices.Collect(maps.Keys(lastCompiled().Int8Scales))[0]
	res, err := build.Build(context.Background(), model, build.Options{Device: "fakegpu", Devices: fakeDevices, Precision: build.INT8, CalibBatches: 2,
		LayerPrecision: map[string]string{quantized: build.FP16}})
	if err != nil {
		t.Fatal(err)
	}
	res.Close()
	if s := lastCompiled().Int8Scales; len(s) != 0 {
		t.Errorf("with %s:fp16 the device got scales %v, want none", quantized, s)
	}
	// with --fp16 the device gets the precision stage's decision: the
	// layer kept in fp32, the other float layers in fp16 (TestFP16ExecutorDevice)
	res, err = build.Build(context.Background(), model, build.Options{Device: "fakegpu", Devices: fakeDevices, Precision: build.FP16,
		LayerPrecision: map[string]string{quantized: build.FP32}})
	if err != nil {
		t.Fatalf("--layer-precision with --fp16 on an executor device: %v", err)
	}
	res.Close()
	if p := lastCompiled().LayerPrecision; p[quantized] != build.FP32 {
		t.Errorf("with %s:fp32 the device got layer precisions %v", quantized, p)
	}
	// and it is refused in an FP32 build, which has nothing to override
	if _, err := build.Build(context.Background(), model, build.Options{Device: "fakegpu", Devices: fakeDevices,
		LayerPrecision: map[string]string{quantized: build.FP32}}); err == nil || !strings.Contains(err.Error(), "--layer-precision") {
		t.Errorf("--layer-precision in an fp32 build on an executor device: %v", err)
	}
}

// lastCompiled returns the options of the fake GPU's last compilation.
func lastCompiled() (o struct {
	Precision      string
	Int8Scales     map[string]float32
	LayerPrecision map[string]string
}) {
	fakeMu.Lock()
	defer fakeMu.Unlock()
	l := fakeCompiled[len(fakeCompiled)-1]
	o.Precision, o.Int8Scales, o.LayerPrecision = l.Precision, l.Int8Scales, l.LayerPrecision
	return o
}

// tinyCNNFile writes TinyCNN to a model file in a new temporary folder and
// returns its path and TinyCNN's two convolutions (the first reads the
// 3-channel image).
func tinyCNNFile(t *testing.T) (model string, convs []string) {
	t.Helper()
	model = filepath.Join(t.TempDir(), "tiny.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	convs = convNames(examples.TinyCNN())
	if len(convs) != 2 {
		t.Fatalf("TinyCNN has convolutions %v, want 2", convs)
	}
	return model, convs
}

// convNames lists g's Conv nodes in order.
func convNames(g *ir.Graph) []string {
	var out []string
	for _, n := range g.Nodes {
		if n.OpType == "Conv" {
			out = append(out, n.Name)
		}
	}
	return out
}
