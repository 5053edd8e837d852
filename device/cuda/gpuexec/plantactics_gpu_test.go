package gpuexec_test

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// convNet is image[batch,16,32,32] -> Conv(3x3, 32, bias) -> Relu ->
// Conv(3x3, 32, bias) -> Relu -> Conv(1x1, 64) -> GlobalAveragePool ->
// Flatten -> MatMul(64x128) -> Add -> "y": convolutions for cuDNN (or
// cuBLASLt, the 1x1) and a product for cuBLASLt, each with several
// implementations to time on a real GPU.
func convNet(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor { return ramp(13, 64, -0.1, shape...) }
	b := ir.NewBuilder("convnet", 17)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(16), ir.D(32), ir.D(32))
	h := b.Op("Conv", []*ir.Value{x, b.Const("w1", w(32, 16, 3, 3)), b.Const("b1", w(32))},
		ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []*ir.Value{h})
	h = b.Op("Conv", []*ir.Value{h, b.Const("w2", w(32, 32, 3, 3)), b.Const("b2", w(32))},
		ir.IntsAttr("kernel_shape", 3, 3), ir.IntsAttr("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []*ir.Value{h})
	h = b.Op("Conv", []*ir.Value{h, b.Const("w3", w(64, 32, 1, 1))}, ir.IntsAttr("kernel_shape", 1, 1))
	h = b.Op("GlobalAveragePool", []*ir.Value{h})
	h = b.Op("Flatten", []*ir.Value{h}, ir.IntAttr("axis", 1))
	h = b.Op("MatMul", []*ir.Value{h, b.Const("w4", w(64, 128))})
	h = b.Op("Add", []*ir.Value{h, b.Const("b4", w(128))})
	b.Output(h, "y")
	return marshal(t, b)
}

// TestPlanTacticsOnGPU builds a real plan on the GPU (tactics timed, in
// FP32 and FP16), writes it, and loads it again the way kiln.Load does
// (the header's choices handed back through device.ExecOptions.Tactics):
// every layer whose implementation the build chose (a cuDNN algorithm or
// graph engine, a cuBLASLt result, kiln's kernels) reports the same
// choice at load, and runs the same algorithm (the layer's description,
// read from the library objects in use, is the build's); the plan then
// runs through kiln.Load with finite outputs. The profile's opt shape is
// its max, so that the layers the load plans have the signatures the
// choices were made for. It skips without a GPU.
//
// On the GPU machine: go test -c -o .gpubin/gpuexec.test ./device/cuda/gpuexec
// here, then there .gpubin/gpuexec.test -test.run 'TestPlanTacticsOnGPU' -test.v
func TestPlanTacticsOnGPU(t *testing.T) {
	if _, err := cuda.FingerprintOf(0); err != nil {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	model := convNet(t)
	for _, precision := range []string{"fp32", "fp16"} {
		t.Run(precision, func(t *testing.T) {
			res, notes := buildCUDA(t, "convnet", model, build.Options{Precision: precision,
				Dims: map[string][3]int{"batch": {8, 8, 8}}, TimingCache: filepath.Join(t.TempDir(), "kiln.timing")})
			h := res.Header
			if len(h.Tactics) != 1 {
				t.Fatalf("%d tactic sets, want 1:\n%s", len(h.Tactics), notes)
			}
			built := map[string]plan.Tactic{}
			for _, pt := range h.Tactics[0] {
				if pt.Name != "" {
					built[pt.Layer] = pt
				}
			}
			if len(built) < 2 {
				t.Fatalf("%d layers with a choice in the header, want the convolutions and the product: %+v", len(built), h.Tactics[0])
			}
			path := filepath.Join(t.TempDir(), "convnet.plan")
			if err := res.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			loaded := loadReport(t, path)
			for layer, pt := range built {
				l, ok := loaded[layer]
				switch {
				case !ok:
					t.Errorf("%s: not in the loaded program's report", layer)
				case l.Choice != pt.Name || l.Sig != pt.Sig:
					t.Errorf("%s: built with %q (%s), loaded with %q (%s)", layer, pt.Name, pt.Sig, l.Choice, l.Sig)
				case l.Tactic != pt.Tactic:
					t.Errorf("%s (%s): built running %q, loaded running %q", layer, pt.Name, pt.Tactic, l.Tactic)
				default:
					t.Logf("%s: %s, %s (%v at build)", layer, pt.Name, l.Tactic, pt.Time)
				}
			}
			m := loadPlan(t, res)
			x := tensor.New(tensor.Float32, 8, 16, 32, 32)
			for i := range x.Float32s() {
				x.Float32s()[i] = float32(i%29)/29 - 0.5
			}
			out, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": x})
			if err != nil {
				t.Fatal(err)
			}
			y := out["y"]
			if y == nil || tensor.ShapeString(y.Shape) != "8x128" {
				t.Fatalf("output y %v, want 8x128", y)
			}
			for i, v := range y.Float32s() {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("y[%d] = %v", i, v)
				}
			}
		})
	}
}

// loadReport loads the plan at path as kiln.Load does (profile 0: its
// sections, the header's choices, its max shapes, partitioned again) and
// returns what the loaded program's layer reports say of each layer.
func loadReport(t *testing.T, path string) map[string]device.LayerRun {
	t.Helper()
	p, err := plan.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := &p.Header
	d, ord, err := devices.All().Lookup(h.Device)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Graph()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ops.InferGraph(g); err != nil {
		t.Fatal(err)
	}
	o := device.ExecOptions{Ordinal: ord, Precision: h.Precision, Blobs: p.ProfileBlobs(0), Tactics: h.DeviceTactics(0)}
	if len(h.Profiles) > 0 {
		o.MaxShapes = h.Profiles[0].Shapes(2)
	}
	prog, _, err := partition.Compile(g, d.(device.Executor), o, partition.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	out := map[string]device.LayerRun{}
	for name, b := range prog.(device.BlobProgram).Blobs() {
		if name != device.LayersBlob && !strings.HasSuffix(name, "/"+device.LayersBlob) {
			continue
		}
		r, err := device.ParseLayerReport(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range r.Layers {
			out[l.Name] = l
		}
	}
	return out
}
