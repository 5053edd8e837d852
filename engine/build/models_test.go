package build_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/conformance"
	"github.com/kilnai/kiln/engine/build"
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
		if ops["kiln::FusedConv"] == 0 {
			t.Errorf("no FusedConv: %v", ops)
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
		if ops["kiln::Attention"] == 0 {
			t.Errorf("no kiln::Attention: %v", ops)
		}
		if ops["LayerNormalization"]+ops["kiln::LayerNormalization"] == 0 {
			t.Errorf("no LayerNormalization: %v", ops)
		}
		for _, op := range []string{"Softmax", "ReduceMean", "Erf", "Sqrt"} {
			if ops[op] > 0 {
				t.Errorf("%d %s layers left: %v", ops[op], op, ops)
			}
		}
	}
}
