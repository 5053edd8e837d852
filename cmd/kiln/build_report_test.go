package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// TestBuildReportRandomInputs: the accuracy report of kiln build --fp16 and
// of a build for a device runs random inputs unless --calib-data gives real
// ones; for a model whose inputs are indices into a 5-row table, random
// indices (0-99) are out of range and the FP32 reference itself refuses
// them. The build goes on, saying that the report was skipped and why
// (before, the build failed: 194 of the ONNX node tests under kiln
// conformance --device cuda on an H100). With --calib-data of valid
// indices the report is made; with --calib-data of invalid ones the build
// fails, naming the reference run.
func TestBuildReportRandomInputs(t *testing.T) {
	withDevice(t, poollessGPU{})
	dir := t.TempDir()
	b := ir.NewBuilder("lookup", 17)
	idx := b.Input("idx", tensor.Int64, ir.D(3))
	table := tensor.New(tensor.Float32, 5, 4)
	for i := range table.Float32s() {
		table.Float32s()[i] = float32(i) / 7
	}
	h := b.Op("Gather", []*ir.Value{b.Const("table", table), idx})
	b.Output(b.Op("Relu", []*ir.Value{h}), "rows")
	mp, err := onnx.FromGraph(b.Graph(), "test")
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "lookup.onnx")
	if err := os.WriteFile(model, mp.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	data := func(name string, v ...int64) string {
		d := filepath.Join(dir, name, "test_data_set_0")
		os.MkdirAll(d, 0o755)
		if err := onnx.SaveTensor(filepath.Join(d, "input_0.pb"), "idx", tensor.FromInt64(v, len(v))); err != nil {
			t.Fatal(err)
		}
		return filepath.Dir(d)
	}
	good, bad := data("good", 0, 4, 2), data("bad", 7, 1, 2)
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"fp16 random", []string{"--fp16"}, exitOK, "accuracy report skipped: quant: accuracy comparison failed: quant: not measurable on these inputs: reference run, batch 0"},
		{"device random", []string{"--device", "poollessgpu"}, exitOK, "accuracy report skipped"},
		{"fp16 calib data", []string{"--fp16", "--calib-data", good}, exitOK, "accuracy of fp16 against fp32 on 1 batches"},
		{"device calib data", []string{"--device", "poollessgpu", "--calib-data", good}, exitOK, "accuracy of poollessgpu fp32 against the CPU's fp32 on 1 batches"},
		{"fp16 bad calib data", []string{"--fp16", "--calib-data", bad}, exitError, "reference run, batch 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var msg bytes.Buffer
			old := errOut
			errOut = &msg
			defer func() { errOut = old }()
			var code int
			out := captureStdout(t, func() {
				code = buildCmd(append([]string{model, "-o", filepath.Join(t.TempDir(), "m.plan")}, tt.args...))
			})
			all := out + msg.String()
			if code != tt.code {
				t.Fatalf("kiln build %v exited %d, want %d:\n%s", tt.args, code, tt.code, all)
			}
			if !strings.Contains(all, tt.want) {
				t.Errorf("kiln build %v does not say %q:\n%s", tt.args, tt.want, all)
			}
		})
	}
}
