package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/onnx"
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
