package repository

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNativeConfig: ensemble_scheduling is read into Raw and warned about
// only on a model that is not an ensemble; a native model (ensemble,
// kiln_image) loads without a model file, its config declaring its inputs
// and outputs.
func TestNativeConfig(t *testing.T) {
	const steps = `ensemble_scheduling { step [ { model_name: "m" model_version: -1 input_map { key: "x" value: "IN" } output_map { key: "y" value: "OUT" } } ] }`
	const io = `input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ] output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]`
	tests := []struct {
		name, config string
		warning      string // "" for none
		loadErr      string // "" for a load that works
	}{
		{"ensemble", `platform: "ensemble" ` + io + steps, "", ""},
		{"steps on another platform", `platform: "onnxruntime_onnx" ` + io + steps, `field ensemble_scheduling is shown in the model config but kiln acts on it only with platform "ensemble"`, "model.onnx"},
		{"ensemble without steps", `platform: "ensemble" ` + io, "", "ensemble_scheduling: an ensemble has at least one step"},
		{"ensemble without outputs", `platform: "ensemble" input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ] ` + steps, "", "output: ensemble models declare their outputs"},
		{"kiln_image without inputs", `platform: "kiln_image" output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]`, "", "input: kiln_image models declare their inputs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.config)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(c.Warnings, "\n")
			if tc.warning == "" && got != "" || !strings.Contains(got, tc.warning) {
				t.Errorf("warnings %q, want %q", got, tc.warning)
			}
			if len(c.Raw.GetEnsembleScheduling().GetStep()) == 0 && strings.Contains(tc.config, "ensemble_scheduling") {
				t.Error("Raw has no steps")
			}
			repo := t.TempDir()
			os.MkdirAll(filepath.Join(repo, "n", "1"), 0o755)
			os.WriteFile(filepath.Join(repo, "n", "config.pbtxt"), []byte(tc.config), 0o644)
			m, err := Load(repo, "n")
			if tc.loadErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(m.Versions) != 1 || m.Versions[0].Model != nil || m.Close() != nil {
					t.Errorf("versions %+v", m.Versions)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.loadErr) {
				t.Errorf("load: %v, want %q", err, tc.loadErr)
			}
		})
	}
}
