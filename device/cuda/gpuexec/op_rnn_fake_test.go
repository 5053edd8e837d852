package gpuexec_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device/cuda/gpuexec"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// crnnNet is a CRNN-style text recognizer: image[batch,1,8,width] -> Conv
// 3x3 + Relu -> MaxPool 8x2 (collapsing H) -> Squeeze -> Transpose to
// [width/2, batch, 8] -> bidirectional LSTM (hidden 16) -> Transpose and
// Reshape to [width/2, batch, 32] -> MatMul (10 classes) -> Softmax ->
// "probs"; and a GRU and an RNN on the same sequence whose last states are
// "gru_h" and "rnn_h" (their Y unused).
func crnnNet(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor { return ramp(7, 14, -0.2, shape...) }
	b := ir.NewBuilder("crnn", 18)
	x := b.Input("image", tensor.Float32, ir.S("batch"), ir.D(1), ir.D(8), ir.S("width"))
	h := b.Op("Conv", []*ir.Value{x, b.Const("cw", w(8, 1, 3, 3)), b.Const("cb", w(8))}, ir.IntsAttr("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []*ir.Value{h})
	h = b.Op("MaxPool", []*ir.Value{h}, ir.IntsAttr("kernel_shape", 8, 2), ir.IntsAttr("strides", 8, 2))
	h = b.Op("Squeeze", []*ir.Value{h, b.Const("ax", tensor.FromInt64([]int64{2}, 1))})
	seq := b.Op("Transpose", []*ir.Value{h}, ir.IntsAttr("perm", 2, 0, 1))
	ys := b.OpN("LSTM", 3, []*ir.Value{seq, b.Const("lw", w(2, 64, 8)), b.Const("lr", w(2, 64, 16)), b.Const("lb", w(2, 128))},
		ir.IntAttr("hidden_size", 16), ir.StringAttr("direction", "bidirectional"))
	y := b.Op("Transpose", []*ir.Value{ys[0]}, ir.IntsAttr("perm", 0, 2, 1, 3))
	y = b.Op("Reshape", []*ir.Value{y, b.Const("shape", tensor.FromInt64([]int64{0, 0, 32}, 3))})
	y = b.Op("MatMul", []*ir.Value{y, b.Const("fc", w(32, 10))})
	b.Output(b.Op("Softmax", []*ir.Value{y}, ir.IntAttr("axis", -1)), "probs")
	gru := b.OpN("GRU", 2, []*ir.Value{seq, b.Const("gw", w(1, 24, 8)), b.Const("gr", w(1, 24, 8))},
		ir.IntAttr("hidden_size", 8), ir.IntAttr("linear_before_reset", 1), ir.StringAttr("direction", "reverse"))
	b.Output(gru[1], "gru_h")
	rnn := b.OpN("RNN", 2, []*ir.Value{seq, b.Const("rw", w(1, 4, 8)), b.Const("rr", w(1, 4, 4))}, ir.IntAttr("hidden_size", 4))
	b.Output(rnn[1], "rnn_h")
	return marshal(t, b)
}

// TestRNNFake builds crnnNet for cuda as kiln build does, against the
// fake libraries, in FP32 and FP16 with StrictDevice: every layer, the
// LSTM, GRU and RNN included, is on the GPU (with the default
// KILN_CUDA_UNVERIFIED, as a user builds), and the plan loads and runs at
// two widths (the fakes compute nothing: the outputs' shapes are checked;
// TestRNNOnGPU checks the values on a GPU).
func TestRNNFake(t *testing.T) {
	fakeCUDA(t)
	t.Setenv(gpuexec.EnvUnverified, "")
	model := crnnNet(t)
	for _, prec := range []string{build.FP32, build.FP16} {
		t.Run(prec, func(t *testing.T) {
			res, notes := buildCUDA(t, "crnn", model, build.Options{Precision: prec, StrictDevice: true,
				MaxBatch: 4, Dims: map[string][3]int{"width": {8, 32, 64}}})
			if strings.Contains(notes, "runs on the CPU") {
				t.Errorf("build notes report a fallback:\n%s", notes)
			}
			m := loadPlan(t, res)
			for _, sz := range []struct{ batch, width int }{{2, 32}, {3, 12}} {
				runShapes(t, m, map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, sz.batch, 1, 8, sz.width)}, map[string]string{
					"probs": fmt.Sprintf("%dx%dx10", sz.width/2, sz.batch),
					"gru_h": fmt.Sprintf("1x%dx8", sz.batch),
					"rnn_h": fmt.Sprintf("1x%dx4", sz.batch),
				})
			}
		})
	}
}

// lstmNet is x[4, batch, 8] -> LSTM (hidden 8) -> "y".
func lstmNet(t *testing.T) []byte {
	t.Helper()
	w := func(shape ...int) *tensor.Tensor { return ramp(5, 10, -0.2, shape...) }
	b := ir.NewBuilder("lstm", 17)
	x := b.Input("x", tensor.Float32, ir.D(4), ir.S("batch"), ir.D(8))
	ys := b.OpN("LSTM", 1, []*ir.Value{x, b.Const("w", w(1, 32, 8)), b.Const("r", w(1, 32, 8))}, ir.IntAttr("hidden_size", 8))
	b.Output(ys[0], "y")
	return marshal(t, b)
}

// TestRNNStepKernelByBatch: a plan kiln build makes of an LSTM (FP32 and
// FP16, batch 1 to 32) runs its steps with the plain kernel (rnn_step_*)
// below batch 16 and the batch-tiled one (rnn_step_bt_*) from 16, the
// engine of each batch choosing. The fake driver refuses to launch the
// kernel $KILN_FAKE_BAD_KERNEL names, so a run fails exactly when it
// launches that one.
func TestRNNStepKernelByBatch(t *testing.T) {
	fakeCUDA(t)
	model := lstmNet(t)
	for _, prec := range []string{build.FP32, build.FP16} {
		t.Run(prec, func(t *testing.T) {
			res, _ := buildCUDA(t, "lstm", model, build.Options{Precision: prec, StrictDevice: true})
			path := filepath.Join(t.TempDir(), "lstm.plan")
			if err := res.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			sfx := map[string]string{build.FP32: "f32", build.FP16: "f16"}[prec]
			for _, tt := range []struct {
				batch int
				step  string // the step kernel the run must launch
			}{
				{1, "rnn_step_"}, {8, "rnn_step_"}, {15, "rnn_step_"}, {16, "rnn_step_bt_"}, {32, "rnn_step_bt_"},
			} {
				for _, bad := range []string{"rnn_step_", "rnn_step_bt_"} {
					t.Setenv("KILN_FAKE_BAD_KERNEL", bad+sfx)
					m, err := kiln.Load(path) // engines look their kernels up as they are made
					if err != nil {
						t.Fatal(err)
					}
					_, err = m.Run(context.Background(), map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, 4, tt.batch, 8)})
					m.Close()
					launched := err != nil && strings.Contains(err.Error(), "CUDA_ERROR_INVALID_HANDLE")
					if err != nil && !launched {
						t.Fatalf("batch %d with %s refused: %v", tt.batch, bad+sfx, err)
					}
					if want := bad == tt.step; launched != want {
						t.Errorf("batch %d: launched %s%s: %v (error %v), want %v", tt.batch, bad, sfx, launched, err, want)
					}
				}
			}
		})
	}
}
