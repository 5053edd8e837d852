package build_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kilnai/kiln/engine/build"
)

// TestFP16ExecutorDevice builds TinyCNN with --fp16 for a device that
// compiles graphs itself (the fake GPU of compile_test.go) and for the
// CPU, without and with --layer-precision CONV:fp32: the device gets the
// precision stage's decision per layer (device.ExecOptions.LayerPrecision:
// every float layer fp16 without the override; the overridden one fp32
// with it), the build log lists the fp32 layer with its reason, and the
// CPU build of the same model with the same flags keeps the same layers
// in fp32 (one decision for every device).
func TestFP16ExecutorDevice(t *testing.T) {
	model, convs := tinyCNNFile(t)
	for _, tt := range []struct {
		name   string
		layers map[string]string
		fp32   []string
	}{
		{"the rule alone", nil, nil},
		{"one convolution forced", map[string]string{convs[1]: build.FP32}, []string{convs[1]}},
		{"an fp16 override changes nothing", map[string]string{convs[0]: build.FP16}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := build.Build(context.Background(), model, build.Options{Device: "fakegpu", Devices: fakeDevices, Precision: build.FP16,
				LayerPrecision: tt.layers})
			if err != nil {
				t.Fatal(err)
			}
			notes := strings.Join(res.Header.Notes, "\n")
			res.Close()
			got := lastCompiled()
			if got.Precision != build.FP16 {
				t.Errorf("the device compiled %q", got.Precision)
			}
			var fp32 []string
			fp16 := 0
			for name, p := range got.LayerPrecision {
				switch p {
				case build.FP32:
					fp32 = append(fp32, name)
				case build.FP16:
					fp16++
				default:
					t.Errorf("layer %s: precision %q", name, p)
				}
			}
			if strings.Join(fp32, ",") != strings.Join(tt.fp32, ",") {
				t.Errorf("fp32 layers on the device %v, want %v", fp32, tt.fp32)
			}
			if fp16 < 2 {
				t.Errorf("%d fp16 layers on the device (%v)", fp16, got.LayerPrecision)
			}
			if want := "FP16 on fakegpu: "; !strings.Contains(notes, want) {
				t.Errorf("the build log does not say %q:\n%s", want, notes)
			}
			for _, name := range tt.fp32 {
				if want := "fp32  " + name + " ("; !strings.Contains(notes, want) || !strings.Contains(notes, "kept in fp32 (layer precision)") {
					t.Errorf("the build log does not say %q:\n%s", want, notes)
				}
			}
			// the CPU build with the same flags: the same layers in fp32
			cpu, err := build.Build(context.Background(), model, build.Options{Precision: build.FP16, LayerPrecision: tt.layers})
			if err != nil {
				t.Fatal(err)
			}
			defer cpu.Close()
			var cpu32 []string
			for _, l := range cpu.Header.Layers {
				if _, known := got.LayerPrecision[l.Name]; known && l.Precision == build.FP32 {
					cpu32 = append(cpu32, l.Name)
					if want := "fp32: kept in fp32 (layer precision)"; l.Reason != want {
						t.Errorf("CPU plan: layer %s's reason %q, want %q", l.Name, l.Reason, want)
					}
				}
			}
			if strings.Join(cpu32, ",") != strings.Join(tt.fp32, ",") {
				t.Errorf("fp32 layers on the CPU %v, on the device %v", cpu32, fp32)
			}
		})
	}
}
