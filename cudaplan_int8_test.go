package kiln_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// TestCUDAInt8PlanFake is `kiln build --device cuda --int8` of the example
// network against the fake CUDA libraries (which check every cuDNN
// descriptor and compute nothing), untuned and tuned: the build calibrates
// and hands the GPU executor the quantized convolution's input scale, the
// plan says which layer runs in int8 (the second convolution; the first
// reads the 3-channel image and stays fp16), carries the scales' section and
// the accuracy report, and kiln.Load runs it without calibrating again.
func TestCUDAInt8PlanFake(t *testing.T) {
	t.Setenv(envCUDALibPath, fakeCUDA(t))
	for _, tt := range []struct {
		name string
		o    build.Options
	}{
		{"untuned", build.Options{NoTiming: true}},
		{"tuned", build.Options{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.Device, o.Precision, o.CalibBatches = "cuda", build.INT8, 2
			res, err := build.BuildBytes(context.Background(), "tinycnn", examples.TinyCNNModel, o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "tinycnn.plan")
			err = res.WriteFile(path)
			h := res.Header
			found := false
			for _, b := range res.Blobs {
				found = found || b.Name == "cuda.int8" && strings.Contains(string(b.Data), `"scales":{"`)
			}
			res.Close()
			if err != nil {
				t.Fatal(err)
			}
			precisions := map[string]int{}
			var convs []string
			for _, l := range h.Layers {
				if strings.Contains(l.Op, "Conv") {
					convs = append(convs, l.Precision)
				}
				precisions[l.Precision]++
			}
			// untuned the quantized layer runs in int8; tuned, the fakes
			// (compute 9.0: the 8-bit chains on by default) time every
			// implementation alike, and chain-aware tuning's engine-level
			// choice keeps the earliest of equal times, the tuned INT8
			// engine (gpuexec/int8tune.go)
			want := "fp16 int8"
			if strings.Join(convs, " ") != want {
				t.Errorf("convolutions run in %v, want %s (layers by precision %v)", convs, want, precisions)
			}
			if len(h.Accuracy) == 0 {
				t.Error("no accuracy report in the plan")
			}
			if !found {
				t.Error("the plan has no cuda.int8 section with the scales")
			}
			m, err := kiln.Load(path)
			if err != nil {
				t.Fatalf("kiln.Load of an INT8 CUDA plan: %v", err)
			}
			defer m.Close()
			in, want2, err := examples.TinyCNNTestData()
			if err != nil {
				t.Fatal(err)
			}
			out, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": in})
			if err != nil {
				t.Fatal(err)
			}
			if got := out["probabilities"]; got == nil || tensor.ShapeString(got.Shape) != tensor.ShapeString(want2.Shape) {
				t.Fatalf("outputs %v, want probabilities of shape %v", out, want2.Shape)
			}
		})
	}
	// INT8 needs calibration data or a cache, as on the CPU
	_, err := build.BuildBytes(context.Background(), "tinycnn", examples.TinyCNNModel, build.Options{Device: "cuda", Precision: build.INT8})
	if !errors.Is(err, build.ErrOptions) || !strings.Contains(err.Error(), "--calib") {
		t.Errorf("INT8 without calibration: %v", err)
	}
}
