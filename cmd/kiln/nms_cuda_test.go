package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// nmsDetector is a small YOLO-style detector with NonMaxSuppression in the
// graph: images [1, 3, h, w] -> Conv (stride 4) -> per anchor a box and 4
// class scores -> NonMaxSuppression (at most 10 a class, IoU 0.5, score
// 0.5) -> "selected" and the kept boxes gathered by the selected indices,
// "kept".
func nmsDetector(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor {
		x := tensor.New(tensor.Float32, shape...)
		for i := range x.Float32s() {
			x.Float32s()[i] = float32(i%11)/11 - 0.45
		}
		return x
	}
	i64 := func(v ...int64) *tensor.Tensor { return tensor.FromInt64(v, len(v)) }
	f32 := func(v float32) *tensor.Tensor {
		x := tensor.New(tensor.Float32, 1)
		x.Float32s()[0] = v
		return x
	}
	b := ir.NewBuilder("nmsdet", 17)
	x := b.Input("images", tensor.Float32, ir.D(1), ir.D(3), ir.S("h"), ir.S("w"))
	y := b.Op("Conv", []*ir.Value{x, b.Const("w", w(8, 3, 4, 4)), b.Const("b", w(8))}, ir.IntsAttr("kernel_shape", 4, 4), ir.IntsAttr("strides", 4, 4))
	y = b.Op("Reshape", []*ir.Value{y, b.Const("flat", i64(1, 8, -1))})
	ax := b.Const("ax", i64(1))
	boxes := b.Op("Transpose", []*ir.Value{b.Op("Slice", []*ir.Value{y, b.Const("b0", i64(0)), b.Const("b4", i64(4)), ax})}, ir.IntsAttr("perm", 0, 2, 1))
	scores := b.Op("Sigmoid", []*ir.Value{b.Op("Slice", []*ir.Value{y, b.Const("s4", i64(4)), b.Const("s8", i64(8)), ax})})
	sel := b.Op("NonMaxSuppression", []*ir.Value{boxes, scores, b.Const("max", i64(10)), b.Const("iou", f32(0.5)), b.Const("score", f32(0.5))})
	idx := b.Op("Gather", []*ir.Value{sel, b.Const("two", tensor.FromInt64([]int64{2}))}, ir.IntAttr("axis", 1))
	b.Output(sel, "selected")
	b.Output(b.Op("Gather", []*ir.Value{b.Op("Squeeze", []*ir.Value{boxes, b.Const("ax0", i64(0))}), idx}), "kept")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// TestNMSCUDAFake (issue 10: a YOLO-style detector with NonMaxSuppression
// on the GPU with no fallback), through the CLI against the fake CUDA
// libraries: kiln build --device cuda --strict-device (FP32 and --fp16)
// builds, its log saying every layer is on cuda; kiln inspect shows
// NonMaxSuppression on cuda with its kernels and no layer falling back;
// kiln run --dump-profile runs the plan as two GPU segments (the layers
// after NonMaxSuppression compiled for the rows each run selects; the
// fakes compute nothing, so none).
func TestNMSCUDAFake(t *testing.T) {
	fakeCUDA(t)
	t.Setenv("KILN_CUDA_UNVERIFIED", "1") // until an H100 run checks the kernel
	dir := t.TempDir()
	model := filepath.Join(dir, "nmsdet.onnx")
	if err := os.WriteFile(model, nmsDetector(t), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, flags := range [][]string{nil, {"--fp16"}} {
		out := filepath.Join(dir, "nmsdet"+strings.Join(flags, "")+".plan")
		var code int
		said := captureStdout(t, func() {
			code = buildCmd(append([]string{model, "-o", out, "--device", "cuda", "--strict-device", "--profile", "images:1x3x32x32,1x3x64x64,1x3x96x128"}, flags...))
		})
		if code != exitOK {
			t.Fatalf("kiln build --device cuda --strict-device %v exited %d:\n%s", flags, code, said)
		}
		shown := captureStdout(t, func() { code = inspectCmd([]string{out}) })
		if code != exitOK || !regexp.MustCompile(`layers \(10: 10 on cuda, 0 on the CPU\)`).MatchString(shown) ||
			!regexp.MustCompile(`(?m)^.*NonMaxSuppression.*cuda.*nms_`).MatchString(shown) {
			t.Errorf("kiln inspect %v exited %d, want NonMaxSuppression on cuda:\n%s", flags, code, shown)
		}
		profiled := captureStdout(t, func() {
			code = runCmd([]string{out, "--shape", "images:1x3x64x96", "--iterations", "2", "--dump-profile"})
		})
		if code != exitOK || len(regexp.MustCompile(`(?m)^  \d+ +cuda +\S`).FindAllString(profiled, -1)) != 2 || regexp.MustCompile(`(?m)^  \d+ +cpu `).MatchString(profiled) {
			t.Errorf("kiln run --dump-profile %v exited %d, want two cuda segments and none on the CPU:\n%s", flags, code, profiled)
		}
	}
}
