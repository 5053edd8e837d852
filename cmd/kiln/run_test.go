package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/quant"
	"github.com/kilnai/kiln/tensor"
)

// TestRunExitCodes checks kiln run's contract: 0 when outputs match, 1 on a
// mismatch, 2 on any error.
func TestRunExitCodes(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	in, out, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	write := func(set string, want *tensor.Tensor) string {
		p := filepath.Join(dir, set)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := onnx.SaveTensor(filepath.Join(p, "input_0.pb"), "image", in); err != nil {
			t.Fatal(err)
		}
		if err := onnx.SaveTensor(filepath.Join(p, "output_0.pb"), "probabilities", want); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", out)
	wrong := out.Clone()
	wrong.Float32s()[0] += 0.5
	bad := write("bad", wrong)
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"match", []string{model, "--data", good}, exitOK},
		{"embedded example", []string{"example"}, exitOK},
		{"mismatch", []string{model, "--data", bad}, exitMismatch},
		{"random inputs with shape and timing", []string{"--shape", "image:3x3x32x32", "--iterations", "3", model}, exitOK},
		{"missing model", []string{filepath.Join(dir, "nope.onnx")}, exitError},
		{"not a model", []string{filepath.Join(good, "input_0.pb")}, exitError},
		{"wrong rank", []string{model, "--shape", "image:3x32x32"}, exitError},
		{"unknown input", []string{model, "--shape", "pixels:1x3x32x32"}, exitError},
		{"bad flag value", []string{model, "--iterations", "0"}, exitError},
		{"no model", nil, exitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := runCmd(tt.args); got != tt.want {
				t.Fatalf("kiln run %v exited %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}

// sharedModels is the folder of the reference models, from this package.
const sharedModels = "../../../shared/models"

// runOutput runs f with os.Stdout and os.Stderr (and errOut, where kiln's
// messages go) captured and returns what it printed to each.
func runOutput(t *testing.T, f func()) (stdout, stderr string) {
	t.Helper()
	capture := func(target **os.File) func() string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		old := *target
		*target = w
		done := make(chan string)
		go func() {
			b, _ := io.ReadAll(r)
			done <- string(b)
		}()
		return func() string {
			*target = old
			w.Close()
			s := <-done
			r.Close()
			return s
		}
	}
	endOut := capture(&os.Stdout)
	endErr := capture(&os.Stderr)
	oldErrOut := errOut // help and error messages
	errOut = os.Stderr
	defer func() {
		errOut = oldErrOut
		stdout, stderr = endOut(), endErr()
	}()
	f()
	return
}

func needShared(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(sharedModels); err != nil {
		t.Skipf("needs the shared models in %s: %v", sharedModels, err)
	}
}

// TestRunSharedModelsNoFlags runs every shared model as the README says,
// with no flags: random inputs at the default profile's opt shape, the
// sizes taken by symbolic dimensions printed (bert_mini's seq and
// yolo_tiny's h and w were refused as "not fixed").
func TestRunSharedModelsNoFlags(t *testing.T) {
	needShared(t)
	tests := []struct {
		model string
		shown []string // in stdout
	}{
		{"resnet_mini", []string{"1x3x224x224", "batch=1"}},
		{"mobilenet_v2", []string{"1x3x224x224"}},
		{"squeezenet1_1", []string{"1x3x224x224"}},
		{"bert_mini", []string{"input_ids", "1x128", "batch=1 seq=128", "the default profile's opt sizes", "--shape input_ids:"}},
		{"yolo_tiny", []string{"images", "1x3x128x128", "h=128 w=128"}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			args := []string{filepath.Join(sharedModels, tt.model, "model.onnx"), "--iterations", "1"}
			var code int
			out, errs := runOutput(t, func() { code = runCmd(args) })
			if code != exitOK {
				t.Fatalf("kiln run %v exited %d:\n%s%s", args, code, out, errs)
			}
			for _, s := range tt.shown {
				if !strings.Contains(out, s) {
					t.Errorf("output does not show %q:\n%s", s, out)
				}
			}
		})
	}
}

// TestRunShapesAndData checks the shapes kiln run builds and runs an ONNX
// model at: --shape's, --data's (the engine covers them, also in reduced
// precision, whose calibration and accuracy runs take them), and the
// errors for shapes the model cannot take.
func TestRunShapesAndData(t *testing.T) {
	needShared(t)
	yolo := filepath.Join(sharedModels, "yolo_tiny")
	bert := filepath.Join(sharedModels, "bert_mini")
	tests := []struct {
		name  string
		args  []string
		want  int
		shown []string
	}{
		{"yolo fp16 with data", []string{filepath.Join(yolo, "model.onnx"), "--fp16", "--data", filepath.Join(yolo, "test_data_set_0")}, exitOK, []string{"fp16", "1x3x320x320", " ok"}},
		{"yolo int8 random calibration with data", []string{filepath.Join(yolo, "model.onnx"), "--int8", "--calib-random", "2", "--data", filepath.Join(yolo, "test_data_set_0")}, exitOK, []string{"int8", "1x3x320x320", " ok"}},
		{"yolo fp16 random inputs", []string{filepath.Join(yolo, "model.onnx"), "--fp16"}, exitOK, []string{"fp16", "1x3x128x128"}},
		{"yolo int8 at a given shape", []string{filepath.Join(yolo, "model.onnx"), "--int8", "--calib-random", "2", "--shape", "images:2x3x64x96"}, exitOK, []string{"int8", "2x3x64x96"}},
		{"bert fp16 with data", []string{filepath.Join(bert, "model.onnx"), "--fp16", "--data", filepath.Join(bert, "test_data_set_0")}, exitOK, []string{"fp16", "2x128", " ok"}},
		{"bert with a seq range", []string{filepath.Join(bert, "model.onnx"), "--dim", "seq=1,16,64"}, exitOK, []string{"1x16", `opt sizes of profile "default"`}},
		{"bert with a profile", []string{filepath.Join(bert, "model.onnx"), "--profile", "input_ids:1x16,2x32,4x64", "--profile", "attention_mask:1x16,2x32,4x64"}, exitOK, []string{"input_ids            int64    2x32", "attention_mask       int64    2x32", `opt sizes of profile "profile0"`}},
		{"bert with one input's shape", []string{filepath.Join(bert, "model.onnx"), "--shape", "input_ids:2x16"}, exitOK, []string{"attention_mask       int64    2x16  (batch=2 seq=16: sizes of the other inputs' --shape"}},
		{"bert fp16 with one input's shape", []string{filepath.Join(bert, "model.onnx"), "--fp16", "--shape", "input_ids:3x8"}, exitOK, []string{"fp16", "3x8"}},
		{"shape of the wrong rank", []string{filepath.Join(yolo, "model.onnx"), "--fp16", "--shape", "images:3x64x64"}, exitError, nil},
		{"shape of an unknown input", []string{filepath.Join(yolo, "model.onnx"), "--shape", "pixels:1x3x64x64"}, exitError, nil},
		{"shape and data", []string{filepath.Join(yolo, "model.onnx"), "--shape", "images:1x3x64x64", "--data", filepath.Join(yolo, "test_data_set_0")}, exitError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			out, errs := runOutput(t, func() { code = runCmd(tt.args) })
			if code != tt.want {
				t.Fatalf("kiln run %v exited %d, want %d:\n%s%s", tt.args, code, tt.want, out, errs)
			}
			for _, s := range tt.shown {
				if !strings.Contains(out, s) {
					t.Errorf("output does not show %q:\n%s", s, out)
				}
			}
			if code == exitError && !strings.Contains(errs, "kiln:") {
				t.Errorf("no error message: %q", errs)
			}
		})
	}
}

// TestRunToleranceHelp checks that kiln run -h shows one default for
// --rtol and --atol (the per-precision ones), and that the defaults and
// an explicit value apply: an fp32 run of yolo_tiny's data passes at the
// default, fails at --atol 0 --rtol 0 against an output perturbed by 1e-3.
func TestRunToleranceHelp(t *testing.T) {
	_, help := runOutput(t, func() { runCmd([]string{"-h"}) })
	for _, flagName := range []string{"rtol", "atol"} {
		i := strings.Index(help, "-"+flagName+" float")
		if i < 0 {
			t.Fatalf("help has no %s:\n%s", flagName, help)
		}
		entry := help[i:]
		if j := strings.Index(entry[1:], "\n  -"); j > 0 {
			entry = entry[:j+1]
		}
		if n := strings.Count(entry, "default"); n != 1 || !strings.Contains(entry, "per precision") {
			t.Errorf("%s help shows %d defaults: %q", flagName, n, entry)
		}
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	in, out, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	off := out.Clone()
	for i, v := range off.Float32s() {
		off.Float32s()[i] = v * (1 + 5e-4) // within rtol 1e-3, not within 0
	}
	set := filepath.Join(dir, "set")
	if err := os.MkdirAll(set, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(set, "input_0.pb"), "image", in); err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(set, "output_0.pb"), "probabilities", off); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"fp32 defaults", []string{model, "--data", set}, exitOK},
		{"explicit zero tolerances", []string{model, "--data", set, "--rtol", "0", "--atol", "0"}, exitMismatch},
		{"fp16 defaults", []string{model, "--fp16", "--data", set}, exitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			o, e := runOutput(t, func() { code = runCmd(tt.args) })
			if code != tt.want {
				t.Errorf("kiln run %v exited %d, want %d:\n%s%s", tt.args, code, tt.want, o, e)
			}
		})
	}
}

// TestBuildReducedPrecisionCLI builds every shared model as the README's
// first contact does, kiln build --fp16 and kiln build --int8
// --calib-random 2 with the default flags (tactic timing on: FP16 builds
// failed their tactic check, hidden by tests that built with timing
// off), checks the accuracy report the plan records and runs the plan on
// the model's test data within the precision's tolerances.
func TestBuildReducedPrecisionCLI(t *testing.T) {
	needShared(t)
	floor := map[string]float64{"fp16": 0.999, "int8": 0.99}
	for _, model := range []string{"resnet_mini", "mobilenet_v2", "squeezenet1_1", "bert_mini", "yolo_tiny"} {
		for _, prec := range []string{"fp16", "int8"} {
			t.Run(model+"/"+prec, func(t *testing.T) {
				dir := filepath.Join(sharedModels, model)
				plan := filepath.Join(t.TempDir(), model+"."+prec+".plan")
				args := []string{"--" + prec, filepath.Join(dir, "model.onnx"), "-o", plan}
				if prec == "int8" {
					args = append([]string{"--calib-random", "2"}, args...)
				}
				var code int
				out, errs := runOutput(t, func() { code = buildCmd(args) })
				if code != exitOK {
					t.Fatalf("kiln build %v exited %d:\n%s%s", args, code, out, errs)
				}
				if !strings.Contains(errs, "tactics (profile") || strings.Contains(errs, "not timed") {
					t.Errorf("the build did not time tactics:\n%s", errs)
				}
				m, err := kiln.Load(plan)
				if err != nil {
					t.Fatal(err)
				}
				h := m.Plan()
				m.Close()
				var acc quant.AccuracyReport
				if err := json.Unmarshal(h.Accuracy, &acc); err != nil || len(acc.Outputs) == 0 {
					t.Fatalf("no accuracy report in the plan: %v", err)
				}
				if c := acc.MinCosine(); c < floor[prec] {
					t.Errorf("cosine %.6f < %.3f:\n%s", c, floor[prec], acc.String())
				}
				if h.Precision != prec {
					t.Errorf("plan precision %q", h.Precision)
				}
				rargs := []string{plan, "--data", filepath.Join(dir, "test_data_set_0")}
				out, errs = runOutput(t, func() { code = runCmd(rargs) })
				if code != exitOK {
					t.Errorf("kiln run %v exited %d:\n%s%s", rargs, code, out, errs)
				}
			})
		}
	}
}

// TestRunUnknownRank runs a model whose input has no declared shape: with
// no flags an error that asks for --shape, with --shape a run.
func TestRunUnknownRank(t *testing.T) {
	b := ir.NewBuilder("unranked", 13)
	x := b.Input("x", tensor.Float32)
	x.Type.Shape = nil
	b.Output(b.Op("Relu", []*ir.Value{x}), "y")
	mp, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(model, mp.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"no flags", []string{model}, exitError, "--shape x:"},
		{"with a shape", []string{model, "--shape", "x:2x3"}, exitOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			out, errs := runOutput(t, func() { code = runCmd(tt.args) })
			if code != tt.want || !strings.Contains(errs, tt.msg) {
				t.Errorf("kiln run %v exited %d, want %d with %q:\n%s%s", tt.args, code, tt.want, tt.msg, out, errs)
			}
		})
	}
}

// TestRunSaveDataAndCosine: kiln run --save-data writes the inputs run and
// the outputs computed as a test data set that --data then checks, also
// by cosine similarity (--cosine); an FP16 build passes 0.9999 against the
// FP32 set, a set whose output was changed does not.
func TestRunSaveDataAndCosine(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	set := filepath.Join(dir, "set")
	var code int
	out := captureStdout(t, func() {
		code = runCmd([]string{model, "--shape", "image:3x3x32x32", "--seed", "7", "--save-data", set})
	})
	if code != exitOK || !strings.Contains(out, "wrote the inputs and outputs to "+set) {
		t.Fatalf("kiln run --save-data exited %d:\n%s", code, out)
	}
	in, name, err := onnx.ReadTensorFile(filepath.Join(set, "input_0.pb"))
	if err != nil || name != "image" || tensor.ShapeString(in.Shape) != "3x3x32x32" {
		t.Fatalf("input_0.pb: %q %v, %v", name, in, err)
	}
	for _, c := range []struct {
		args []string
		want int
		says string
	}{
		{[]string{model, "--data", set, "--cosine", "0.999999"}, exitOK, "cosine 1.000000  ok"},
		{[]string{model, "--fp16", "--data", set, "--cosine", "0.9999"}, exitOK, "  ok"},
		{[]string{model, "--data", set, "--cosine", "1.5"}, exitError, ""},
	} {
		out := captureStdout(t, func() { code = runCmd(c.args) })
		if code != c.want || !strings.Contains(out, c.says) {
			t.Errorf("kiln run %v exited %d (want %d):\n%s", c.args, code, c.want, out)
		}
	}
	// change the reference: the outputs no longer point the same way
	ref, name, err := onnx.ReadTensorFile(filepath.Join(set, "output_0.pb"))
	if err != nil {
		t.Fatal(err)
	}
	v := ref.Float32s()
	for i := range v {
		if i%2 == 0 {
			v[i] = -v[i]
		}
	}
	if err := onnx.SaveTensor(filepath.Join(set, "output_0.pb"), name, ref); err != nil {
		t.Fatal(err)
	}
	out = captureStdout(t, func() {
		code = runCmd([]string{model, "--data", set, "--rtol", "10", "--atol", "10", "--cosine", "0.9999"})
	})
	if code != exitMismatch || !strings.Contains(out, "below --cosine 0.9999") {
		t.Errorf("a changed reference within --rtol/--atol 10: exit %d, want %d by cosine:\n%s", code, exitMismatch, out)
	}
}
