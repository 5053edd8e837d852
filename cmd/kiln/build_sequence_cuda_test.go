package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// nodeSuiteDir is where Debian's libonnx-testdata puts the ONNX node tests.
const nodeSuiteDir = "/usr/share/libonnx-testdata/data/node"

// seqInputModel returns a model whose graph input s is a sequence of
// float32[2,3] tensors: n = SequenceLength(s), grown = SequenceInsert(s, x)
// (a sequence output) and y = Relu(SequenceAt(s, 0) + x), the one tensor
// computation (a GPU runs it); y is the last output.
func seqInputModel(t *testing.T) []byte {
	t.Helper()
	b := ir.NewBuilder("seqinput", 17)
	s := b.Input("s", tensor.Float32)
	s.Type = ir.SequenceOf(ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(2, 3)})
	x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3))
	first := b.Op("SequenceAt", []*ir.Value{s, b.Const("pos", tensor.FromInt64([]int64{0}))})
	b.Output(b.Op("SequenceLength", []*ir.Value{s}), "n")
	grown := b.Op("SequenceInsert", []*ir.Value{s, x})
	grown.Type = s.Type
	b.Output(grown, "grown")
	b.Output(b.Op("Relu", []*ir.Value{b.Op("Add", []*ir.Value{first, x})}), "y")
	mp, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return mp.Marshal()
}

// writeSeqInputs writes input_0.pb (s, three elements) and input_1.pb (x)
// for seqInputModel into dir.
func writeSeqInputs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var elems []*tensor.Tensor
	for e := range 3 {
		v := make([]float32, 6)
		for i := range v {
			v[i] = float32((e+1)*(i-2)) / 4
		}
		elems = append(elems, tensor.FromFloat32(v, 2, 3))
	}
	seqT := ir.SequenceOf(ir.Type{DType: tensor.Float32, Shape: ir.KnownShape(2, 3)})
	if err := onnx.SaveValue(filepath.Join(dir, "input_0.pb"), "s", tensor.NewSequence(elems), seqT); err != nil {
		t.Fatal(err)
	}
	x := tensor.FromFloat32([]float32{0.5, -1, 2, -0.25, 1, -3}, 2, 3)
	if err := onnx.SaveValue(filepath.Join(dir, "input_1.pb"), "x", x, ir.Type{}); err != nil {
		t.Fatal(err)
	}
}

// cpuReference runs model on the CPU with kiln run --data in and writes
// the inputs and the outputs computed to a new test data set, returned.
func cpuReference(t *testing.T, model, in string) string {
	t.Helper()
	ref := filepath.Join(t.TempDir(), "cpu")
	var code int
	out, errOut := runOutput(t, func() { code = runCmd([]string{model, "--data", in, "--save-data", ref}) })
	if code != exitOK {
		t.Fatalf("kiln run %s on the CPU exited %d:\n%s%s", model, code, out, errOut)
	}
	return ref
}

// TestBuildSequenceInputsCUDAFake: models whose inputs are sequences or
// optional values build with kiln build --device cuda (tactic timing on,
// as a user builds) against the fake CUDA libraries: the layers with such
// values stay on the CPU with the reason in the build log, the tensor
// layers go to the GPU, the accuracy report runs on random sequences (or
// says why it cannot make them), and kiln run of the plan matches the CPU.
// The node tests come from Debian's libonnx-testdata (skipped when it is
// absent); the fakes compute nothing, so seqInputModel's y, the one output
// the GPU computes, is shown but not compared (TestBuildSequenceInputsOnGPU
// compares it on a GPU).
func TestBuildSequenceInputsCUDAFake(t *testing.T) {
	fakeCUDA(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "seqinput.onnx")
	if err := os.WriteFile(model, seqInputModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in")
	writeSeqInputs(t, in)
	ref := cpuReference(t, model, in)
	// the GPU's output left out: the fakes compute nothing
	if err := os.Remove(filepath.Join(ref, "output_2.pb")); err != nil {
		t.Fatal(err)
	}

	type buildCase struct {
		name  string
		model string // the .onnx file
		data  string // the test data set kiln run compares with
		flags []string
		says  []string
	}
	cases := []buildCase{{
		name: "handmade", model: model, data: ref,
		says: []string{
			`(SequenceLength) runs on the CPU: device: unsupported: "s" is a sequence(float32[2,3]): sequence and optional values run on the CPU`,
			`(SequenceAt) runs on the CPU: device: unsupported: "s" is a sequence(float32[2,3])`,
			"2 of 5 layers on cuda, 3 on the CPU (SequenceAt x1, SequenceLength x1, SequenceInsert x1)",
			"generated 2 random batches",
			"accuracy of cuda fp32 against the CPU's fp32 on 2 batches",
			"grown[2]", // the inserted element, compared
		},
	}}
	for _, nc := range []struct {
		test  string
		flags []string
		says  []string
	}{
		{"test_sequence_map_add_1_sequence_1_tensor", nil, []string{"(SequenceMap) runs on the CPU", "accuracy of cuda fp32 against the CPU's fp32 on 2 batches", "y0[1]"}},
		// INT8 calibrates on random sequences (a run binds SequenceMap's
		// types: the table must still be this graph's)
		{"test_sequence_map_add_1_sequence_1_tensor", []string{"--int8", "--calib-random", "2"}, []string{"(SequenceMap) runs on the CPU", "calibration (entropy): "}},
		{"test_optional_get_element_sequence", nil, []string{"(OptionalGetElement) runs on the CPU", `"optional_input" is a optional(sequence(int32[4]))`, "output[0]"}},
		{"test_loop16_seq_none", nil, []string{"(Loop) runs on the CPU", "accuracy of cuda fp32"}},
		{"test_sequence_insert_at_front", nil, []string{"(SequenceInsert) runs on the CPU",
			`accuracy report skipped: quant: bad calibration data: quant: not measurable on these inputs: input "sequence" is a sequence(int64[*]): its elements' type or rank is not known`}},
	} {
		d := filepath.Join(nodeSuiteDir, nc.test)
		if _, err := os.Stat(d); err != nil {
			t.Logf("skipping %s: %v (Debian: apt-get install libonnx-testdata)", nc.test, err)
			continue
		}
		cases = append(cases, buildCase{name: strings.Join(append([]string{nc.test}, nc.flags...), " "), model: filepath.Join(d, "model.onnx"),
			data: filepath.Join(d, "test_data_set_0"), flags: nc.flags, says: nc.says})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := filepath.Join(t.TempDir(), "model.plan")
			var code int
			out, errOut := runOutput(t, func() { code = buildCmd(append([]string{tc.model, "-o", plan, "--device", "cuda"}, tc.flags...)) })
			if code != exitOK {
				t.Fatalf("kiln build --device cuda %v exited %d:\n%s%s", tc.flags, code, out, errOut)
			}
			for _, s := range tc.says {
				if !strings.Contains(out+errOut, s) {
					t.Errorf("kiln build --device cuda does not say %q:\n%s%s", s, out, errOut)
				}
			}
			if strings.Contains(out+errOut, "tactics: not timed") {
				t.Errorf("the build did not time tactics:\n%s", out)
			}
			out, errOut = runOutput(t, func() { code = runCmd([]string{plan, "--data", tc.data}) })
			if code != exitOK || strings.Contains(out, "MISMATCH") || !regexp.MustCompile(`(?m)^output .* ok$`).MatchString(out) {
				t.Fatalf("kiln run of the cuda plan --data exited %d, want the outputs to match the CPU's:\n%s%s", code, out, errOut)
			}
		})
	}
}

// TestBuildSequenceInputsOnGPU is TestBuildSequenceInputsCUDAFake's
// handmade model on a real GPU, every output compared with the CPU's, y
// (Relu of SequenceAt + x, on the GPU) included. It skips without a CUDA
// GPU.
func TestBuildSequenceInputsOnGPU(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "seqinput.onnx")
	if err := os.WriteFile(model, seqInputModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := kiln.Build(context.Background(), model, kiln.BuildOptions{Device: "cuda"})
	if errors.Is(err, device.ErrUnavailable) {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	in := filepath.Join(dir, "in")
	writeSeqInputs(t, in)
	ref := cpuReference(t, model, in)
	plan := filepath.Join(dir, "seqinput.plan")
	var code int
	out, errOut := runOutput(t, func() { code = buildCmd([]string{model, "-o", plan, "--device", "cuda"}) })
	if code != exitOK || !strings.Contains(out+errOut, "2 of 5 layers on cuda") {
		t.Fatalf("kiln build --device cuda exited %d, want Add and Relu on cuda:\n%s%s", code, out, errOut)
	}
	out, errOut = runOutput(t, func() { code = runCmd([]string{plan, "--data", ref}) })
	t.Logf("kiln run of the cuda plan:\n%s%s", out, errOut)
	if code != exitOK || len(regexp.MustCompile(`(?m)^output .* ok$`).FindAllString(out, -1)) != 3 {
		t.Fatalf("kiln run --data exited %d, want n, grown and y to match the CPU's", code)
	}
}
