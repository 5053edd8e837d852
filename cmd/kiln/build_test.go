package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/onnx"
)

// TestBuildInspectRun builds the bundled example into a plan, inspects it
// and runs it, then checks the errors of bad flags and bad plans.
func TestBuildInspectRun(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "tiny.onnx")
	if err := os.WriteFile(model, examples.TinyCNNModel, 0o644); err != nil {
		t.Fatal(err)
	}
	in, out, err := examples.TinyCNNTestData()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "set")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(data, "input_0.pb"), "image", in); err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(filepath.Join(data, "output_0.pb"), "probabilities", out); err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(dir, "tiny.plan")
	profile := "image:1x3x32x32,2x3x32x32,4x3x32x32"
	if code := buildCmd([]string{model, "-o", plan, "--profile", profile}); code != exitOK {
		t.Fatalf("kiln build exited %d", code)
	}
	if code := buildCmd([]string{model, "-o", filepath.Join(dir, "two.plan"), "--profile", profile, "--profile-set", "big", "--profile", "image:5x3x32x32,8x3x32x32,16x3x32x32"}); code != exitOK {
		t.Fatalf("kiln build with two profiles exited %d", code)
	}
	two := filepath.Join(dir, "two.plan")
	tampered := filepath.Join(dir, "tampered.plan")
	b, err := os.ReadFile(plan)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(tampered, b, 0o644); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "report.json")
	runs := []struct {
		name string
		args []string
		want int
	}{
		{"plan matches", []string{plan, "--data", data}, exitOK},
		{"plan random at opt shape, profiled, exported", []string{plan, "--iterations", "3", "--dump-profile", "--export-json", report}, exitOK},
		{"plan by duration", []string{plan, "--duration", "1ms"}, exitOK},
		{"plan inside profile", []string{plan, "--shape", "image:4x3x32x32"}, exitOK},
		{"plan outside profile", []string{plan, "--shape", "image:8x3x32x32"}, exitError},
		{"tampered plan", []string{tampered}, exitError},
		{"second profile", []string{two, "--shape", "image:8x3x32x32"}, exitOK},
		{"min of the second profile", []string{two, "--shape", "image:5x3x32x32", "--iterations", "2"}, exitOK},
		{"outside both profiles", []string{two, "--shape", "image:32x3x32x32"}, exitError},
		{"onnx built in memory", []string{model, "--data", data, "--opt-level", "2"}, exitOK},
		{"onnx unoptimized", []string{model, "--data", data, "--opt-level", "0"}, exitOK},
	}
	for _, tt := range runs {
		t.Run("run "+tt.name, func(t *testing.T) {
			if got := runCmd(tt.args); got != tt.want {
				t.Fatalf("kiln run %v exited %d, want %d", tt.args, got, tt.want)
			}
		})
	}
	var rep runReport
	if b, err := os.ReadFile(report); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Iterations != 3 || rep.Latency.P99 <= 0 || len(rep.Layers) == 0 {
		t.Errorf("exported report lacks results: %+v", rep)
	}
	for _, args := range [][]string{{plan}, {"--json", plan}} {
		if code := inspectCmd(args); code != exitOK {
			t.Errorf("kiln inspect %v exited %d", args, code)
		}
	}
	if code := inspectCmd([]string{tampered}); code != exitError {
		t.Errorf("kiln inspect of a tampered plan exited %d", code)
	}
	bad := []struct {
		name string
		args []string
	}{
		{"fp16 and int8", []string{model, "--fp16", "--int8"}},
		{"int8 without calibration", []string{model, "--int8"}},
		{"calibration without int8", []string{model, "--calib-random", "4"}},
		{"min above max", []string{model, "--profile", "image:4x3x32x32,2x3x32x32,1x3x32x32"}},
		{"unknown input", []string{model, "--profile", "pixels:1x3x32x32"}},
		{"fixed dim changed", []string{model, "--profile", "image:1x3x16x16,1x3x32x32,1x3x64x64"}},
		{"empty profile set", []string{model, "--profile-set", "a"}},
		{"bad dim", []string{model, "--dim", "batch=1,2"}},
		{"bad workspace", []string{model, "--workspace", "lots"}},
		{"workspace without timing", []string{model, "--workspace", "1G", "--no-timing"}},
		{"bad device", []string{model, "--device", "tpu"}},
		{"bad level", []string{model, "--opt-level", "9"}},
		{"bad layer precision", []string{model, "--layer-precision", "conv1:fp8"}},
		{"missing model", []string{filepath.Join(dir, "none.onnx")}},
		{"overwrite model", []string{model, "-o", model}},
		{"no model", nil},
	}
	for _, tt := range bad {
		t.Run("build "+tt.name, func(t *testing.T) {
			if got := buildCmd(tt.args); got != exitError {
				t.Fatalf("kiln build %v exited %d, want %d", tt.args, got, exitError)
			}
		})
	}
}
