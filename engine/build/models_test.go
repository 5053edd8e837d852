package build_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/conformance"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/quant"
)

const sharedModels = "../../../shared/models"

// TestModelPlans builds an FP32 plan of every shared model, loads it as
// kiln run does and compares with the reference outputs; it checks the
// fusions kiln inspect must show.
func TestModelPlans(t *testing.T) {
	if _, err := os.Stat(sharedModels); err != nil {
		t.Skipf("needs the shared models in %s: %v", sharedModels, err)
	}
	for _, name := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "bert_mini", "yolo_tiny"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(sharedModels, name)
			res, err := build.Build(context.Background(), filepath.Join(dir, "model.onnx"), build.Options{OptLevel: 2, NoTiming: testing.Short()})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), name+".plan")
			err = res.WriteFile(path)
			res.Close()
			if err != nil {
				t.Fatal(err)
			}
			m, err := kiln.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			checkFusions(t, name, m)
			sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
			if len(sets) == 0 {
				t.Fatalf("no test data in %s", dir)
			}
			for _, set := range sets {
				in, want, err := conformance.LoadDataSet(m, set)
				if err != nil {
					t.Fatal(err)
				}
				got, err := m.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				for i, o := range m.Outputs() {
					if c := conformance.Compare(got[o.Name], want[i], 1e-3, 1e-4); !c.OK {
						t.Errorf("%s output %s: %s", filepath.Base(set), o.Name, c.Reason)
					}
				}
			}
		})
	}
}

// checkFusions asserts what kiln inspect shows of the optimized models:
// every BatchNormalization folded, every Conv fused with its activation and
// residual Add, and the transformer fusions on bert_mini.
func checkFusions(t *testing.T, name string, m *kiln.Model) {
	h := m.Plan()
	ops := map[string]int{}
	for _, l := range h.Layers {
		ops[l.Op]++
	}
	switch name {
	case "resnet_mini", "mobilenet_v2":
		for _, op := range []string{"BatchNormalization", "Conv", "Relu", "Clip", "Add"} {
			if ops[op] > 0 {
				t.Errorf("%d %s layers left after optimization: %v", ops[op], op, ops)
			}
		}
		if ops["kiln::FusedConv"]+ops["kiln::BlockedConv"] == 0 {
			t.Errorf("no FusedConv or BlockedConv: %v", ops)
		}
		residual := 0
		for _, l := range h.Layers {
			for _, f := range l.Fused {
				if strings.Contains(f, "residual Add") {
					residual++
				}
			}
		}
		if residual == 0 {
			t.Errorf("no residual Add fused: %v", ops)
		}
	case "bert_mini":
		if ops["kiln::Attention"]+ops["kiln::MultiHeadAttention"] == 0 {
			t.Errorf("no kiln::Attention: %v", ops)
		}
		if ops["LayerNormalization"]+ops["kiln::LayerNormalization"]+ops["kiln::SkipLayerNormalization"] == 0 {
			t.Errorf("no LayerNormalization: %v", ops)
		}
		for _, op := range []string{"Softmax", "ReduceMean", "Erf", "Sqrt"} {
			if ops[op] > 0 {
				t.Errorf("%d %s layers left: %v", ops[op], op, ops)
			}
		}
	}
}

// TestReducedPrecisionPlans builds FP16 and INT8 plans of every shared
// model, calibrated on its test data, and checks the accuracy report the
// build records: FP16 cosine >= 0.999 on every model, INT8 >= 0.99 on the
// CNNs the issue names. The builds go the way kiln build's do, with tactic
// timing on (its default: timing off hid that FP16 tactics failed their
// check), at smaller opt shapes for bert_mini and yolo_tiny to stay fast.
func TestReducedPrecisionPlans(t *testing.T) {
	if _, err := os.Stat(sharedModels); err != nil {
		t.Skipf("needs the shared models in %s: %v", sharedModels, err)
	}
	int8Floor := map[string]float64{"resnet_mini": 0.99, "mobilenet_v2": 0.99}
	for _, name := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "bert_mini", "yolo_tiny"} {
		for _, prec := range []string{build.FP16, build.INT8} {
			t.Run(name+"/"+prec, func(t *testing.T) {
				dir := filepath.Join(sharedModels, name)
				o := cliDefaults(name)
				o.Precision, o.CalibData = prec, dir
				res, err := build.Build(context.Background(), filepath.Join(dir, "model.onnx"), o)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Close()
				var acc quant.AccuracyReport
				if err := json.Unmarshal(res.Header.Accuracy, &acc); err != nil || len(acc.Outputs) == 0 {
					t.Fatalf("no accuracy report in the plan: %v", err)
				}
				t.Logf("%s %s:\n%s", name, prec, acc.String())
				floor := 0.999
				if prec == build.INT8 {
					floor = int8Floor[name]
				}
				if c := acc.MinCosine(); c < floor {
					t.Errorf("%s %s: cosine similarity %.6f < %.3f", name, prec, c, floor)
				}
				quantized := 0
				for _, l := range res.Header.Layers {
					if l.Precision == prec {
						quantized++
					}
				}
				if quantized == 0 {
					t.Errorf("no layer runs in %s", prec)
				}
				if len(res.Header.Tactics) == 0 {
					t.Errorf("no tactics timed")
				}
			})
		}
	}
}

// cliDefaults are the options kiln build's default flags give (tactic
// timing on, level 2, batches up to 32), with smaller opt shapes for the
// models with symbolic sizes, as --dim would give them.
func cliDefaults(model string) build.Options {
	o := build.Options{OptLevel: 2, MaxBatch: 32}
	switch model {
	case "bert_mini":
		o.Dims = map[string][3]int{"seq": {1, 32, 512}}
	case "yolo_tiny":
		o.Dims = map[string][3]int{"h": {32, 64, 640}, "w": {32, 64, 640}}
	}
	return o
}

// TestAnyShapeReducedPrecision builds yolo_tiny (symbolic batch, height
// and width) for any shape, as kiln run and kiln serve without batching
// do, in FP16 and INT8 on random batches: the precision stage runs its
// batches at the default profile's opt shape or at Options.OptShapes, not
// at 1x1 images (whose pooling broke the Concat of the detection head).
func TestAnyShapeReducedPrecision(t *testing.T) {
	if _, err := os.Stat(sharedModels); err != nil {
		t.Skipf("needs the shared models in %s: %v", sharedModels, err)
	}
	model := filepath.Join(sharedModels, "yolo_tiny", "model.onnx")
	tests := []struct {
		name   string
		o      build.Options
		logged string
	}{
		{"fp16 default opt", build.Options{Precision: build.FP16, NoTiming: true}, "at images 1x3x128x128"},
		{"int8 default opt", build.Options{Precision: build.INT8, CalibBatches: 2, NoTiming: true}, "at images 1x3x128x128"},
		{"fp16 given shapes", build.Options{Precision: build.FP16, OptShapes: map[string][]int{"images": {1, 3, 96, 64}}}, "at images 1x3x96x64"},
		{"int8 given shapes", build.Options{Precision: build.INT8, CalibBatches: 2, OptShapes: map[string][]int{"images": {2, 3, 64, 64}}}, "at images 2x3x64x64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			o := tt.o
			o.AnyShape = true
			o.Log = func(m string) { log = append(log, m) }
			res, err := build.Build(context.Background(), model, o)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			if len(res.Header.Profiles) != 0 {
				t.Errorf("profiles %v: want none (any shape)", res.Header.Profiles)
			}
			all := strings.Join(log, "\n")
			if !strings.Contains(all, tt.logged) {
				t.Errorf("log does not say %q:\n%s", tt.logged, all)
			}
			var acc quant.AccuracyReport
			if err := json.Unmarshal(res.Header.Accuracy, &acc); err != nil || len(acc.Outputs) == 0 {
				t.Fatalf("no accuracy report: %v", err)
			}
			if c := acc.MinCosine(); c < 0.99 {
				t.Errorf("cosine %.6f < 0.99:\n%s", c, acc.String())
			}
		})
	}
	// Given shapes the model cannot take are an error naming the input.
	_, err := build.Build(context.Background(), model, build.Options{Precision: build.FP16, AnyShape: true, OptShapes: map[string][]int{"images": {1, 4, 64, 64}}})
	if err == nil || !strings.Contains(err.Error(), "images") {
		t.Errorf("opt shape with 4 channels: error %v, want one naming images", err)
	}
}

// TestZeroOptionsFP16 builds as the README's Go call does,
// kiln.Build(ctx, path, kiln.BuildOptions{Precision: "fp16"}): the zero
// options (tactic timing on, the derived profile) but the precision, on a
// CNN and on the detection model with symbolic height and width.
func TestZeroOptionsFP16(t *testing.T) {
	if _, err := os.Stat(sharedModels); err != nil {
		t.Skipf("needs the shared models in %s: %v", sharedModels, err)
	}
	for _, name := range []string{"resnet_mini", "yolo_tiny"} {
		t.Run(name, func(t *testing.T) {
			res, err := build.Build(context.Background(), filepath.Join(sharedModels, name, "model.onnx"), build.Options{Precision: build.FP16})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			if res.Header.Precision != build.FP16 || len(res.Header.Tactics) == 0 {
				t.Errorf("precision %q, %d tactic sets: want fp16 with timed tactics", res.Header.Precision, len(res.Header.Tactics))
			}
			var acc quant.AccuracyReport
			if err := json.Unmarshal(res.Header.Accuracy, &acc); err != nil || acc.MinCosine() < 0.999 {
				t.Errorf("accuracy report %s (%v): want cosine >= 0.999", acc.String(), err)
			}
		})
	}
}
