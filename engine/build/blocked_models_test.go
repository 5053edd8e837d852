package build_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/conformance"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// needBlocked skips a test when ops/nn does not register the blocked
// operators the optimizer's "blocked" pass writes (the pass then leaves
// every graph alone).
func needBlocked(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(sharedModels); err != nil {
		t.Skipf("needs the shared models in %s: %v", sharedModels, err)
	}
	for _, op := range []string{"BlockedConv", "ToBlocked", "FromBlocked"} {
		if _, ok := ops.Lookup("kiln", op); !ok {
			t.Skipf("kiln::%s is not registered (ops/nn): the blocked pass does nothing yet", op)
		}
	}
}

// loadLevel builds model at the given optimization level (with o's other
// options) and loads the plan as kiln run does.
func loadLevel(t *testing.T, model string, level int, o build.Options) *kiln.Model {
	t.Helper()
	o.OptLevel = level
	o.NoTiming = o.NoTiming || testing.Short()
	res, err := build.Build(context.Background(), filepath.Join(sharedModels, model, "model.onnx"), o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), model+".plan")
	err = res.WriteFile(path)
	res.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := kiln.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// blockedLayers counts the plan's layers by op, blocked ones apart.
func blockedLayers(m *kiln.Model) (blocked, fused int, all map[string]int) {
	all = map[string]int{}
	for _, l := range m.Plan().Layers {
		all[l.Op]++
	}
	return all["kiln::BlockedConv"], all["kiln::FusedConv"], all
}

// TestBlockedModelPlans builds every shared model at level 2 (the blocked
// pass runs from level 2) and checks its outputs against the reference
// outputs at TestModelPlans' tolerances and against the level-1 plan's
// outputs (NCHW, nothing fused).
func TestBlockedModelPlans(t *testing.T) {
	needBlocked(t)
	for _, name := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "bert_mini", "yolo_tiny"} {
		t.Run(name, func(t *testing.T) {
			m2 := loadLevel(t, name, 1, build.Options{})
			m3 := loadLevel(t, name, 2, build.Options{})
			blocked, fused, all := blockedLayers(m3)
			t.Logf("level 2: %d BlockedConv, %d FusedConv left; layers %v", blocked, fused, all)
			if name != "bert_mini" && blocked == 0 {
				t.Errorf("no BlockedConv in the level-2 plan: %v", all)
			}
			sets, _ := filepath.Glob(filepath.Join(sharedModels, name, "test_data_set_*"))
			if len(sets) == 0 {
				t.Fatalf("no test data for %s", name)
			}
			for _, set := range sets {
				in, want, err := conformance.LoadDataSet(m3, set)
				if err != nil {
					t.Fatal(err)
				}
				got3, err := m3.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				got2, err := m2.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				for i, o := range m3.Outputs() {
					if c := conformance.Compare(got3[o.Name], want[i], 1e-3, 1e-4); !c.OK {
						t.Errorf("%s output %s against the reference: %s", filepath.Base(set), o.Name, c.Reason)
					}
					if c := conformance.Compare(got3[o.Name], got2[o.Name], 1e-3, 1e-4); !c.OK {
						t.Errorf("%s output %s against level 1: %s", filepath.Base(set), o.Name, c.Reason)
					}
				}
			}
		})
	}
}

// TestBlockedDynamicShapes builds yolo_tiny (symbolic batch, height and
// width) at level 2 (blocked) for a range of sizes and compares with the
// level-1 plan (NCHW) at sizes of the range, not all multiples of 32, and
// at batch 3.
func TestBlockedDynamicShapes(t *testing.T) {
	needBlocked(t)
	o := build.Options{Dims: map[string][3]int{"h": {32, 64, 640}, "w": {32, 64, 640}}}
	m2 := loadLevel(t, "yolo_tiny", 1, o)
	m3 := loadLevel(t, "yolo_tiny", 2, o)
	if b, _, all := blockedLayers(m3); b == 0 {
		t.Fatalf("no BlockedConv: %v", all)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, hw := range [][3]int{{1, 96, 160}, {1, 224, 288}, {3, 64, 96}} {
		x := tensor.New(tensor.Float32, hw[0], 3, hw[1], hw[2])
		for i := range x.Float32s() {
			x.Float32s()[i] = r.Float32()
		}
		in := map[string]*kiln.Tensor{"images": x}
		got3, err := m3.Run(context.Background(), in)
		if err != nil {
			t.Fatalf("%v: %v", hw, err)
		}
		got2, err := m2.Run(context.Background(), in)
		if err != nil {
			t.Fatalf("%v: %v", hw, err)
		}
		for name, want := range got2 {
			if c := conformance.Compare(got3[name], want, 1e-3, 1e-4); !c.OK {
				t.Errorf("%dx3x%dx%d output %s against level 1: %s", hw[0], hw[1], hw[2], name, c.Reason)
			}
		}
	}
}

// TestBlockedNotInt8 builds resnet_mini for INT8 at the default level: the
// blocked pass stays out of INT8 builds (quantization works on
// kiln::FusedConv), so its convolutions are quantized, none blocked.
func TestBlockedNotInt8(t *testing.T) {
	needBlocked(t)
	m := loadLevel(t, "resnet_mini", 2, build.Options{Precision: build.INT8, CalibBatches: 4})
	blocked, _, all := blockedLayers(m)
	if blocked != 0 || all["kiln::ToBlocked"] != 0 {
		t.Errorf("INT8 plan has blocked layers: %v", all)
	}
	q := 0
	for _, l := range m.Plan().Layers {
		if l.Precision == build.INT8 {
			q++
		}
	}
	if q == 0 {
		t.Errorf("INT8 plan quantized no layer: %v", all)
	}
}
