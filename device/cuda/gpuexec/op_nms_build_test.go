package gpuexec_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

var _ partition.DataDependent = gpuexec.Device{}

// yoloNMSNet is a YOLO-style detector with NonMaxSuppression in the graph,
// as exporters write one: images [1, 3, h, w] -> Conv (stride 4, 12
// channels) -> per anchor a box (centers and sizes) and 8 class scores ->
// NonMaxSuppression (center_point_box 1, at most 20 a class, IoU 0.5,
// score 0.55) -> the selected rows "selected", and the kept boxes
// gathered by the selected indices "kept" [N, 4], and their classes
// "classes" [N].
func yoloNMSNet(t *testing.T) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	w := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(r.NormFloat64() * 0.3)
		}
		return x
	}
	i64 := func(v ...int64) *tensor.Tensor { return tensor.FromInt64(v, len(v)) }
	f32 := func(v float32) *tensor.Tensor {
		x := tensor.New(tensor.Float32, 1)
		x.Float32s()[0] = v
		return x
	}
	b := ir.NewBuilder("yolo_nms_mini", 17)
	x := b.Input("images", tensor.Float32, ir.D(1), ir.D(3), ir.S("h"), ir.S("w"))
	y := b.Op("Conv", []*ir.Value{x, b.Const("w", w(12, 3, 4, 4)), b.Const("b", w(12))},
		ir.IntsAttr("kernel_shape", 4, 4), ir.IntsAttr("strides", 4, 4))
	y = b.Op("Reshape", []*ir.Value{y, b.Const("flat", i64(1, 12, -1))}) // [1, 12, anchors]
	ax1 := b.Const("ax1", i64(1))
	slice := func(lo, hi int64) *ir.Value {
		return b.Op("Slice", []*ir.Value{y, b.Const(fmt.Sprintf("lo%d", lo), i64(lo)), b.Const(fmt.Sprintf("hi%d", hi), i64(hi)), ax1})
	}
	centers := b.Op("Mul", []*ir.Value{slice(0, 2), b.Const("spread", f32(16))})
	sizes := b.Op("Mul", []*ir.Value{b.Op("Abs", []*ir.Value{slice(2, 4)}), b.Const("scale", f32(8))})
	boxes := b.Op("Transpose", []*ir.Value{b.Op("Concat", []*ir.Value{centers, sizes}, ir.IntAttr("axis", 1))}, ir.IntsAttr("perm", 0, 2, 1))
	scores := b.Op("Sigmoid", []*ir.Value{slice(4, 12)})
	sel := b.Op("NonMaxSuppression", []*ir.Value{boxes, scores, b.Const("max", i64(20)), b.Const("iou", f32(0.5)), b.Const("score", f32(0.55))},
		ir.IntAttr("center_point_box", 1))
	idx := b.Op("Gather", []*ir.Value{sel, b.Const("two", tensor.FromInt64([]int64{2}))}, ir.IntAttr("axis", 1))
	cls := b.Op("Gather", []*ir.Value{sel, b.Const("one", tensor.FromInt64([]int64{1}))}, ir.IntAttr("axis", 1))
	flat := b.Op("Squeeze", []*ir.Value{boxes, b.Const("ax0", i64(0))})
	b.Output(sel, "selected")
	b.Output(b.Op("Gather", []*ir.Value{flat, idx}), "kept")
	b.Output(cls, "classes")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// buildNotes returns the build's notes, one string.
func buildNotes(res *build.Result) string { return strings.Join(res.Header.Notes, "\n") }

// TestNMSBuildFake builds the YOLO-style detector for cuda (FP32 and FP16)
// through the builder with its defaults, against the fake libraries:
// every layer is on cuda (no fallback; StrictDevice builds too), the
// layers after NonMaxSuppression in a second GPU segment with its own
// kernels in the plan, and the plan loads and runs (the fakes compute
// nothing: a run selects no box, and the outputs have 0 rows).
func TestNMSBuildFake(t *testing.T) {
	dir := gpuexec.FakeLibs(t)
	t.Setenv(cuda.EnvLibPath, dir)
	model := yoloNMSNet(t)
	for _, prec := range []string{"fp32", "fp16"} {
		t.Run(prec, func(t *testing.T) {
			o := build.Options{Device: "cuda", Precision: prec, StrictDevice: true, Dims: map[string][3]int{"h": {32, 64, 96}, "w": {32, 64, 96}}}
			res, err := build.BuildBytes(context.Background(), "yolo_nms_mini", model, o)
			if err != nil {
				t.Fatal(err)
			}
			notes := buildNotes(res)
			if !strings.Contains(notes, " layers on cuda, 0 on the CPU") || strings.Contains(notes, "runs on the CPU") {
				t.Errorf("build notes do not say every layer is on cuda:\n%s", notes)
			}
			var seg1 bool
			for _, b := range res.Blobs {
				seg1 = seg1 || strings.HasPrefix(b.Name, partition.SegmentPrefix(1)+"cuda.kernels.")
			}
			if !seg1 {
				t.Errorf("plan sections %v: want the kernels of GPU segment 1 (after NonMaxSuppression)", res.Header.Blobs)
			}
			path := filepath.Join(t.TempDir(), "yolo.plan")
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
			out, err := m.Run(context.Background(), map[string]*tensor.Tensor{"images": tensor.New(tensor.Float32, 1, 3, 64, 96)})
			if err != nil {
				t.Fatal(err)
			}
			for name, shape := range map[string]string{"selected": "0x3", "kept": "0x4", "classes": "0"} {
				if y := out[name]; y == nil || tensor.ShapeString(y.Shape) != shape {
					t.Errorf("output %s: %v, want %s", name, y, shape)
				}
			}
		})
	}
}

// TestNMSBuildOnGPU builds the YOLO-style detector for cuda and the CPU,
// at three input sizes, and runs both: FP32 selects exactly the CPU's
// rows (and so the same kept boxes, within float32 tolerance); FP16, whose
// boxes and scores differ from FP32's in the last bits, selects the same
// rows but for a few (at least 90% of the CPU's rows found). With
// KILN_YOLO_NMS naming an exported yolo_nms model.onnx (bench/gpu_models.py),
// that model is run the same way. It skips without a GPU.
func TestNMSBuildOnGPU(t *testing.T) {
	if fp, err := cuda.Probe(cuda.Options{}); fp.GPUName == "" {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	models := map[string][]byte{"yolo_nms_mini": yoloNMSNet(t)}
	if p := os.Getenv("KILN_YOLO_NMS"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		models["yolo_nms"] = b
	}
	sizes := [][]int{{1, 3, 320, 320}, {1, 3, 416, 416}, {1, 3, 480, 640}}
	for name, model := range models {
		input := "images"
		dims := map[string][3]int{"h": {320, 416, 480}, "w": {320, 416, 640}}
		cpu, err := build.BuildBytes(context.Background(), name, model, build.Options{Dims: dims, NoTiming: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, prec := range []string{"fp32", "fp16"} {
			t.Run(name+"/"+prec, func(t *testing.T) {
				res, err := build.BuildBytes(context.Background(), name, model, build.Options{Device: "cuda", Precision: prec, StrictDevice: true, Dims: dims, NoTiming: true})
				if err != nil {
					t.Fatal(err)
				}
				defer res.Close()
				t.Logf("%s", buildNotes(res))
				r := rand.New(rand.NewPCG(9, 9))
				for _, shape := range sizes {
					x := tensor.New(tensor.Float32, shape...)
					for i := range x.Float32s() {
						x.Float32s()[i] = float32(r.Float64())
					}
					in := map[string]*tensor.Tensor{input: x}
					want, err := runResult(t, cpu, in)
					if err != nil {
						t.Fatal(err)
					}
					got, err := runResult(t, res, in)
					if err != nil {
						t.Fatalf("%v: %v", shape, err)
					}
					compareNMS(t, fmt.Sprint(shape), got, want, prec == "fp16")
				}
			})
		}
		cpu.Close()
	}
}

// runResult runs a build's plan, written and loaded as a user would.
func runResult(t *testing.T, res *build.Result, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.plan")
	if err := res.WriteFile(path); err != nil {
		return nil, err
	}
	m, err := kiln.Load(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	for range 2 {
		if _, err := m.Run(context.Background(), in); err != nil {
			return nil, err
		}
	}
	return m.Run(context.Background(), in)
}

// compareNMS compares the int64 outputs row by row: all equal in FP32, at
// least 90% of the CPU's rows found in FP16; float outputs of equal shape
// within tolerance where the rows agree.
func compareNMS(t *testing.T, at string, got, want map[string]*tensor.Tensor, half bool) {
	t.Helper()
	for name, w := range want {
		g := got[name]
		if g == nil || g.DType != w.DType || len(g.Shape) != len(w.Shape) {
			t.Errorf("%s %s: %v, want %v%v", at, name, g, w.DType, w.Shape)
			continue
		}
		if w.DType != tensor.Int64 {
			continue
		}
		rowLen := 1
		for _, d := range w.Shape[1:] {
			rowLen *= d
		}
		rows := func(x *tensor.Tensor) map[string]int {
			m := map[string]int{}
			v := x.Int64s()
			for i := 0; i+rowLen <= len(v); i += rowLen {
				m[fmt.Sprint(v[i:i+rowLen])]++
			}
			return m
		}
		if !half {
			if tensor.ShapeString(g.Shape) != tensor.ShapeString(w.Shape) || fmt.Sprint(g.Int64s()) != fmt.Sprint(w.Int64s()) {
				t.Errorf("%s %s: %v rows differ from the CPU's %v", at, name, g.Shape, w.Shape)
			}
			continue
		}
		if name != "selected" {
			continue
		}
		gr, found := rows(g), 0
		for k, n := range rows(w) {
			found += min(n, gr[k])
		}
		t.Logf("%s %s: fp16 %d rows, the CPU's fp32 %d, %d in common", at, name, g.Shape[0], w.Shape[0], found)
		if found*10 < w.Shape[0]*9 {
			t.Errorf("%s %s: fp16 found %d of the CPU's %d rows", at, name, found, w.Shape[0])
		}
	}
}
