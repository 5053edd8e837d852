package gpuexec_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/engine"
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

// TestNMSBuildFake builds the YOLO-style detector for cuda (FP32 and FP16)
// through the builder with its defaults, against the fake libraries:
// every layer is on cuda (no fallback; StrictDevice builds too), the
// layers after NonMaxSuppression in a second GPU segment with its own
// kernels in the plan, and the plan loads and runs (the fakes compute
// nothing: a run selects no box, and the outputs have 0 rows).
func TestNMSBuildFake(t *testing.T) {
	fakeCUDA(t)
	model := yoloNMSNet(t)
	for _, prec := range []string{"fp32", "fp16"} {
		t.Run(prec, func(t *testing.T) {
			o := build.Options{Precision: prec, StrictDevice: true, Dims: map[string][3]int{"h": {32, 64, 96}, "w": {32, 64, 96}}}
			res, notes := buildCUDA(t, "yolo_nms_mini", model, o, " layers on cuda, 0 on the CPU")
			if strings.Contains(notes, "runs on the CPU") {
				t.Errorf("build notes report a fallback:\n%s", notes)
			}
			var seg1 bool
			for _, b := range res.Blobs {
				seg1 = seg1 || strings.HasPrefix(b.Name, partition.SegmentPrefix(1)+"cuda.kernels.")
			}
			if !seg1 {
				t.Errorf("plan sections %v: want the kernels of GPU segment 1 (after NonMaxSuppression)", res.Header.Blobs)
			}
			runShapes(t, loadPlan(t, res), map[string]*tensor.Tensor{"images": tensor.New(tensor.Float32, 1, 3, 64, 96)},
				map[string]string{"selected": "int64 0x3", "kept": "float32 0x4", "classes": "int64 0"})
		})
	}
}

// TestNMSBuildOnGPU builds the YOLO-style detector for cuda (FP32 and
// FP16, every layer on the GPU) and for the CPU, at three input sizes, with
// NonMaxSuppression's inputs and output made graph outputs too, and runs
// both. The GPU's selected rows must be exactly those of the CPU kernel run
// on the boxes and scores the GPU computed (in FP16 too: the kernel
// computes IoU from the half values in double precision, as the CPU does
// from their float32 copies). Against the CPU's whole FP32 run, where
// boxes and scores differ in the last bits, FP32 must find at least 90% of
// the CPU's rows and FP16 at least half (logged). With KILN_YOLO_NMS naming
// an exported yolo_nms model.onnx (bench/gpu_models.py), that model is run
// the same way. It skips without a GPU.
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
		model, nms := withNMSOutputs(t, model)
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
					in := map[string]*tensor.Tensor{"images": x}
					want, err := runResult(t, cpu, in)
					if err != nil {
						t.Fatal(err)
					}
					got, err := runResult(t, res, in)
					if err != nil {
						t.Fatalf("%v: %v", shape, err)
					}
					at := fmt.Sprint(shape)
					sel := got[nms.Outputs[0].Name]
					if ref := nmsOnCPU(t, nms, got); sel == nil || fmt.Sprint(sel.Shape, sel.Int64s()) != fmt.Sprint(ref.Shape, ref.Int64s()) {
						t.Errorf("%s: the GPU selected %v rows, the CPU kernel on the GPU's boxes and scores %v (rows differ)", at, sel.Shape, ref.Shape)
					}
					common(t, at, sel, want[nms.Outputs[0].Name], map[string]int{"fp32": 90, "fp16": 50}[prec])
				}
			})
		}
		cpu.Close()
	}
}

// withNMSOutputs returns the model with its NonMaxSuppression node's
// inputs and output added to the graph's outputs, and that node.
func withNMSOutputs(t *testing.T, model []byte) ([]byte, *ir.Node) {
	t.Helper()
	m, err := onnx.DecodeModel(model)
	if err != nil {
		t.Fatal(err)
	}
	g, err := onnx.ToGraph(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	var nms *ir.Node
	for _, n := range g.Nodes {
		if n.OpType == "NonMaxSuppression" {
			nms = n
		}
	}
	if nms == nil {
		t.Fatal("the model has no NonMaxSuppression")
	}
	out := map[*ir.Value]bool{}
	for _, v := range g.Outputs {
		out[v] = true
	}
	for _, v := range append(append([]*ir.Value{}, nms.Inputs...), nms.Outputs[0]) {
		if v != nil && !out[v] {
			g.Outputs = append(g.Outputs, v)
			out[v] = true
		}
	}
	m2, err := onnx.FromGraph(g, "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m2.Marshal(), nms
}

// nmsOnCPU runs the CPU's NonMaxSuppression, with the attributes of nms,
// on the values of its inputs in outs.
func nmsOnCPU(t *testing.T, nms *ir.Node, outs map[string]*tensor.Tensor) *tensor.Tensor {
	t.Helper()
	b := ir.NewBuilder("nms", 17)
	in := map[string]*tensor.Tensor{}
	var args []*ir.Value
	for i, v := range nms.Inputs {
		if v == nil {
			args = append(args, nil)
			continue
		}
		x := outs[v.Name]
		if x == nil {
			t.Fatalf("no output %q (NonMaxSuppression input %d)", v.Name, i)
		}
		var dims []ir.Dim
		for _, d := range x.Shape {
			dims = append(dims, ir.D(int64(d)))
		}
		name := fmt.Sprintf("in%d", i)
		in[name] = x
		args = append(args, b.Input(name, x.DType, dims...))
	}
	var attrs []*ir.Attr
	for _, a := range nms.Attrs {
		attrs = append(attrs, a)
	}
	b.Output(b.Op("NonMaxSuppression", args, attrs...), "selected")
	e, err := engine.New(b.Graph())
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return res["selected"]
}

// common logs how many of want's rows got has, and fails below pct%.
func common(t *testing.T, at string, got, want *tensor.Tensor, pct int) {
	t.Helper()
	if got == nil || want == nil {
		t.Errorf("%s: selected %v, the CPU's %v", at, got, want)
		return
	}
	rows := func(x *tensor.Tensor) map[[3]int64]int {
		m := map[[3]int64]int{}
		v := x.Int64s()
		for i := 0; i+3 <= len(v); i += 3 {
			m[[3]int64{v[i], v[i+1], v[i+2]}]++
		}
		return m
	}
	gr, found := rows(got), 0
	for k, n := range rows(want) {
		found += min(n, gr[k])
	}
	t.Logf("%s: %d rows selected, the CPU's whole FP32 run %d, %d in common", at, got.Shape[0], want.Shape[0], found)
	if found*100 < want.Shape[0]*pct {
		t.Errorf("%s: %d of the CPU's %d rows found (want %d%%)", at, found, want.Shape[0], pct)
	}
}

// runResult runs a build's plan, written and loaded as a user would.
func runResult(t *testing.T, res *build.Result, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	t.Helper()
	m := loadPlan(t, res)
	defer m.Close() // now, not at the test's end (Close is idempotent)
	for range 2 {
		if _, err := m.Run(context.Background(), in); err != nil {
			return nil, err
		}
	}
	return m.Run(context.Background(), in)
}

// TestNMSReferenceOnCPU checks TestNMSBuildOnGPU's reference on the CPU:
// the detector with NonMaxSuppression's inputs made outputs builds and
// runs, nmsOnCPU of those outputs gives the rows the model selected, and
// some rows are selected (so the GPU comparison compares something).
func TestNMSReferenceOnCPU(t *testing.T) {
	model, nms := withNMSOutputs(t, yoloNMSNet(t))
	res, err := build.BuildBytes(context.Background(), "yolo_nms_mini", model, build.Options{Dims: map[string][3]int{"h": {64, 64, 64}, "w": {64, 96, 96}}, NoTiming: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	x := tensor.New(tensor.Float32, 1, 3, 64, 96)
	r := rand.New(rand.NewPCG(9, 9))
	for i := range x.Float32s() {
		x.Float32s()[i] = float32(r.Float64())
	}
	out, err := runResult(t, res, map[string]*tensor.Tensor{"images": x})
	if err != nil {
		t.Fatal(err)
	}
	sel, ref := out[nms.Outputs[0].Name], nmsOnCPU(t, nms, out)
	if sel == nil || sel.Shape[0] == 0 || fmt.Sprint(sel.Int64s()) != fmt.Sprint(ref.Int64s()) {
		t.Errorf("selected %v, the reference %v", sel, ref)
	}
	common(t, "64x96", sel, out["selected"], 100)
}
