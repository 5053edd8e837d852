package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// sequenceModel returns an ONNX model with sequences inside and at its
// edges: x (float32[4,3]) is split into a sequence of rows, each squared by
// SequenceMap's body, and the result is stacked back (y), counted (n) and
// returned as it is (squares, a sequence output); an Optional of y is
// asked whether it holds a value (has); relu, Relu(x), is a tensor layer
// beside them (a GPU runs it).
func sequenceModel(t *testing.T) []byte {
	t.Helper()
	b := ir.NewBuilder("seqmodel", 17)
	x := b.Input("x", tensor.Float32, ir.D(4), ir.D(3))
	rows := b.Op("SplitToSequence", []*ir.Value{x}, ir.IntAttr("axis", 0), ir.IntAttr("keepdims", 0))

	body := ir.NewBuilder("square", 17)
	e := body.Input("e", tensor.Float32, ir.D(3))
	body.Output(body.Op("Mul", []*ir.Value{e, e}), "sq")
	bg := body.Graph()
	bg.Opsets = nil

	squares := b.Op("SequenceMap", []*ir.Value{rows}, ir.GraphAttr("body", bg))
	y := b.Op("ConcatFromSequence", []*ir.Value{squares}, ir.IntAttr("axis", 0), ir.IntAttr("new_axis", 1))
	n := b.Op("SequenceLength", []*ir.Value{squares})
	has := b.Op("OptionalHasElement", []*ir.Value{b.Op("Optional", []*ir.Value{y})})
	b.Output(y, "y")
	b.Output(n, "n")
	b.Output(squares, "squares")
	b.Output(has, "has")
	b.Output(b.Op("Relu", []*ir.Value{x}), "relu")
	squares.Type = ir.SequenceOf(ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(3)})
	mp, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return mp.Marshal()
}

// writeSequenceData writes a test data set for sequenceModel: x and the
// four expected outputs (off is added to the first expected square).
func writeSequenceData(t *testing.T, dir string, off float32) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	xs := make([]float32, 12)
	ys := make([]float32, 12)
	var rows []*tensor.Tensor
	for i := range xs {
		xs[i] = float32(i) - 5
		ys[i] = xs[i] * xs[i]
	}
	ys[0] += off
	for r := 0; r < 4; r++ {
		rows = append(rows, tensor.FromFloat32(ys[3*r:3*r+3], 3))
	}
	save := func(file, name string, v *tensor.Tensor, typ ir.Type) {
		if err := onnx.SaveValue(filepath.Join(dir, file), name, v, typ); err != nil {
			t.Fatal(err)
		}
	}
	save("input_0.pb", "x", tensor.FromFloat32(xs, 4, 3), ir.Type{})
	save("output_0.pb", "y", tensor.FromFloat32(ys, 4, 3), ir.Type{})
	save("output_1.pb", "n", tensor.FromInt64([]int64{4}), ir.Type{})
	save("output_2.pb", "squares", tensor.NewSequence(rows), ir.Type{DType: tensor.Sequence})
	save("output_3.pb", "has", tensor.Scalar(tensor.Bool, 1), ir.Type{})
	relu := make([]float32, 12)
	for i, v := range xs {
		relu[i] = max(v, 0)
	}
	save("output_4.pb", "relu", tensor.FromFloat32(relu, 4, 3), ir.Type{})
}

// TestRunSequencePlanRoundTrip: a model with sequences inside and a
// sequence output runs from the ONNX file and from a plan kiln build
// wrote (the plan saves and loads the sequence types and SequenceMap's
// body), and kiln run --data compares the sequence output element by
// element.
func TestRunSequencePlanRoundTrip(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "seq.onnx")
	if err := os.WriteFile(model, sequenceModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	writeSequenceData(t, good, 0)
	writeSequenceData(t, bad, 0.5)
	plan := filepath.Join(dir, "seq.plan")
	var code int
	out, errOut := runOutput(t, func() { code = buildCmd([]string{model, "-o", plan}) })
	if code != exitOK {
		t.Fatalf("kiln build exited %d:\n%s\n%s", code, out, errOut)
	}
	tests := []struct {
		name string
		args []string
		want int
		says string
	}{
		{"onnx", []string{model, "--data", good}, exitOK, "squares              sequence 4 elements"},
		{"plan", []string{plan, "--data", good}, exitOK, "squares              sequence 4 elements"},
		{"plan mismatch", []string{plan, "--data", bad}, exitMismatch, "sequence element 0: element 0 is 25, want 25.5"},
		{"no random sequence", []string{model, "--data", good, "--save-data", filepath.Join(dir, "saved")}, exitOK, "wrote the inputs and outputs"},
		{"saved data", []string{plan, "--data", filepath.Join(dir, "saved")}, exitOK, "has                  bool"},
		{"fp16 keeps sequence layers in fp32", []string{model, "--fp16", "--data", good}, exitOK, "built (cpu, fp16"},
		{"int8", []string{model, "--int8", "--calib-random", "2", "--data", good}, exitOK, "built (cpu, int8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			out, errOut := runOutput(t, func() { code = runCmd(tt.args) })
			if code != tt.want || !strings.Contains(out+errOut, tt.says) {
				t.Fatalf("kiln run %v exited %d (want %d), output:\n%s\n%s\nwant it to say %q", tt.args, code, tt.want, out, errOut, tt.says)
			}
		})
	}
}

// TestRunSequenceInput: a model whose input is a sequence runs on the
// values of --data; without them kiln run says it cannot make one up.
func TestRunSequenceInput(t *testing.T) {
	b := ir.NewBuilder("seqin", 17)
	s := b.Input("s", tensor.Int64)
	s.Type = ir.SequenceOf(ir.Type{DType: tensor.Int64})
	b.Output(b.Op("SequenceLength", []*ir.Value{s}), "n")
	mp, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "seqin.onnx")
	if err := os.WriteFile(model, mp.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	set := filepath.Join(dir, "set")
	os.MkdirAll(set, 0o755)
	in := tensor.NewSequence([]*tensor.Tensor{tensor.FromInt64([]int64{1, 2}, 2), tensor.FromInt64([]int64{3}, 1)})
	if err := onnx.SaveValue(filepath.Join(set, "input_0.pb"), "s", in, s.Type); err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(set, "output_0.pb"), "n", tensor.FromInt64([]int64{2})); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want int
		says string
	}{
		{[]string{model, "--data", set}, exitOK, "input  s                    sequence 2 elements"},
		{[]string{model}, exitError, "input s is a sequence(int64[*]): give its value with --data"},
	} {
		var code int
		out, errOut := runOutput(t, func() { code = runCmd(tt.args) })
		if code != tt.want || !strings.Contains(out+errOut, tt.says) {
			t.Errorf("kiln run %v exited %d (want %d), output:\n%s\n%s\nwant it to say %q", tt.args, code, tt.want, out, errOut, tt.says)
		}
	}
}

// TestRunSequenceModelOnGPU: built for cuda, the layers with sequence or
// optional values stay on the CPU (the GPU's Supports says why) while the
// tensor layer runs on the GPU, and kiln run --device cuda --data matches.
// It skips without a CUDA GPU.
func TestRunSequenceModelOnGPU(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "seq.onnx")
	if err := os.WriteFile(model, sequenceModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good")
	writeSequenceData(t, good, 0)
	m, err := kiln.Build(context.Background(), model, kiln.BuildOptions{Device: "cuda"})
	if errors.Is(err, device.ErrUnavailable) {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	onGPU := map[string]bool{}
	for _, l := range m.Plan().Layers {
		onGPU[l.Op] = l.Device != "cpu"
		t.Logf("layer %s (%s) on %s", l.Name, l.Op, l.Device)
	}
	for op, want := range map[string]bool{"Relu": true, "SplitToSequence": false, "SequenceMap": false, "ConcatFromSequence": false, "SequenceLength": false, "Optional": false} {
		if got, ok := onGPU[op]; !ok || got != want {
			t.Errorf("layer %s on the GPU: %v (present %v), want %v", op, got, ok, want)
		}
	}
	var code int
	out, errOut := runOutput(t, func() { code = runCmd([]string{model, "--device", "cuda", "--data", good}) })
	t.Logf("kiln run --device cuda:\n%s%s", out, errOut)
	if code != exitOK || !strings.Contains(out, "squares              sequence 4 elements") {
		t.Fatalf("kiln run --device cuda --data exited %d, want %d with the sequence output compared", code, exitOK)
	}
}
