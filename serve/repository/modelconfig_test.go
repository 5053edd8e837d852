package repository

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
)

// TestModelConfigRoundTrip (issue 14, items 1 and 5): every field of
// config.pbtxt that Triton's ModelConfig has comes back in ModelConfig,
// those kiln does not use (reshape, is_shape_tensor, host_policy, ...)
// included, with kiln's defaults filled in where the file leaves a field
// kiln uses unset.
func TestModelConfigRoundTrip(t *testing.T) {
	src := `name: "m" platform: "onnxruntime_onnx" max_batch_size: 4 default_model_filename: "net.onnx"
version_policy { latest { num_versions: 2 } }
input [ { name: "x" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [3, 8, 8] optional: true allow_ragged_batch: true reshape { shape: [192] } } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [10] label_filename: "labels.txt" is_shape_tensor: false } ]
instance_group [ { name: "g" count: 2 kind: KIND_GPU gpus: [0, 1] host_policy: "numa0" profile: ["0"] passive: true } ]
dynamic_batching { preferred_batch_size: [2, 4] preserve_ordering: true max_queue_delay_microseconds: 50 }
parameters { key: "p" value { string_value: "v" } }
model_warmup { name: "w" inputs { key: "x" value { data_type: TYPE_FP32 dims: [3, 8, 8] zero_data: true } } }
optimization { graph { level: 1 } execution_accelerators { cpu_execution_accelerator [ { name: "openvino" parameters { key: "k" value: "v" } } ] } }
response_cache { enable: true }
model_transaction_policy { decoupled: false }
metric_tags { key: "team" value: "vision" }
cc_model_filenames { key: "8.0" value: "a100.onnx" }
batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "n" data_type: TYPE_INT32 source_input: "x" } ]
runtime: "libkiln.so"
`
	c, err := ParseConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	if c.Inputs[0].Format != "FORMAT_NCHW" || c.Outputs[0].LabelFilename != "labels.txt" {
		t.Errorf("format %q, label_filename %q", c.Inputs[0].Format, c.Outputs[0].LabelFilename)
	}
	want := &inference.ModelConfig{}
	if err := prototext.Unmarshal([]byte(src), want); err != nil {
		t.Fatal(err)
	}
	// kiln's defaults for the warmup sample's batch size and count
	want.ModelWarmup[0].BatchSize, want.ModelWarmup[0].Count = 1, 1
	want.GetDynamicBatching().DefaultQueuePolicy = &inference.ModelQueuePolicy{}
	if got := c.ModelConfig(); !proto.Equal(got, want) {
		t.Errorf("ModelConfig\n%v\nwant\n%v", prototext.Format(got), prototext.Format(want))
	}
}

// TestModelConfigSchedulers: a sequence batcher or an ensemble, which kiln
// does not run, is shown as written.
func TestModelConfigSchedulers(t *testing.T) {
	for _, src := range []string{
		`sequence_batching { max_sequence_idle_microseconds: 5000000 oldest { max_candidate_sequences: 4 }
  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [0, 1] } ] } ]
  state [ { input_name: "in" output_name: "out" data_type: TYPE_FP32 dims: [-1] initial_state { name: "z" data_type: TYPE_FP32 dims: [1] zero_data: true } } ] }`,
		`platform: "ensemble" ensemble_scheduling { step [ { model_name: "pre" model_version: -1 input_map { key: "in" value: "raw" } output_map { key: "out" value: "img" } } ] }`,
	} {
		c, err := ParseConfig(src)
		if err != nil {
			t.Fatal(err)
		}
		want := &inference.ModelConfig{}
		if err := prototext.Unmarshal([]byte(src), want); err != nil {
			t.Fatal(err)
		}
		got := c.ModelConfig()
		if !proto.Equal(got.GetSequenceBatching(), want.GetSequenceBatching()) || !proto.Equal(got.GetEnsembleScheduling(), want.GetEnsembleScheduling()) {
			t.Errorf("ModelConfig\n%v\nwant\n%v", prototext.Format(got), prototext.Format(want))
		}
	}
}

// TestConfigFieldErrors: a bad format or label_filename is an error that
// names the field.
func TestConfigFieldErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"unknown format", `input { name: "x" data_type: TYPE_FP32 format: FORMAT_HWC }`, "format"},
		{"format on an output", `output { name: "x" data_type: TYPE_FP32 format: FORMAT_NCHW }`, "format"},
		{"label file on an input", `input { name: "x" data_type: TYPE_FP32 label_filename: "l.txt" }`, "label_filename"},
		{"label file outside", `output { name: "x" data_type: TYPE_FP32 label_filename: "../../etc/passwd" }`, "label_filename"},
		{"absolute label file", `output { name: "x" data_type: TYPE_FP32 label_filename: "/etc/passwd" }`, "label_filename"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(tt.src)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrConfig naming %s", err, tt.want)
			}
		})
	}
}

// TestLabels: an output's label_filename is read from the model folder, one
// label a line; a missing one fails the load naming the field.
func TestLabels(t *testing.T) {
	cfg := `output [ { name: "probabilities" data_type: TYPE_FP32 dims: [10] label_filename: "labels.txt" } ]`
	tests := []struct {
		name   string
		labels string // "" for no file
		want   []string
		err    string
	}{
		{"lines", "a\nb\nc\n", []string{"a", "b", "c"}, ""},
		{"CRLF, no last newline", "a\r\nb", []string{"a", "b"}, ""},
		{"missing", "", nil, "label_filename"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "m", "1"), 0o755)
			os.WriteFile(filepath.Join(dir, "m", "1", "model.onnx"), examples.TinyCNNModel, 0o644)
			os.WriteFile(filepath.Join(dir, "m", "config.pbtxt"), []byte(cfg), 0o644)
			if tt.labels != "" {
				os.WriteFile(filepath.Join(dir, "m", "labels.txt"), []byte(tt.labels), 0o644)
			}
			m, err := Load(dir, "m")
			if tt.err != "" {
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want ErrConfig naming %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if !slices.Equal(m.Labels["probabilities"], tt.want) {
				t.Errorf("labels %q, want %q", m.Labels["probabilities"], tt.want)
			}
		})
	}
}

// TestConfigWarnings: a field kiln does not act on is named in a warning
// that says whether it is Triton's (and shown in the model config) or
// unknown (and dropped).
func TestConfigWarnings(t *testing.T) {
	tests := []struct{ src, want string }{
		{`optimization { graph { level: 1 } }`, "field optimization is shown"},
		{`instance_group { host_policy: "numa0" }`, "field instance_group.host_policy is shown"},
		{`parameters { key: "a" value { string_value: "b" extra: 1 } }`, "field parameters.value.extra is not a field"},
		{`max_bach_size: 4`, "field max_bach_size is not a field of Triton's ModelConfig"},
		{`dynamic_batching { priority_levels: 2 priority_queue_policy { key: 1 value { max_queue_size: 2 nope: 1 } } }`,
			"field dynamic_batching.priority_queue_policy.value.nope is not a field"},
	}
	for _, tt := range tests {
		c, err := ParseConfig(tt.src)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		if len(c.Warnings) == 0 || !strings.Contains(strings.Join(c.Warnings, "; "), tt.want) {
			t.Errorf("%s: warnings %q, want %q", tt.src, c.Warnings, tt.want)
		}
	}
}

// TestResponseCacheNoWarning: response_cache is acted on (the server's
// response cache), so it draws no warning; a bad one is an error.
func TestResponseCacheNoWarning(t *testing.T) {
	c, err := ParseConfig("response_cache { enable: true }")
	if err != nil || len(c.Warnings) != 0 || !c.Raw.GetResponseCache().GetEnable() {
		t.Fatalf("config %+v, %v", c, err)
	}
	if _, err := ParseConfig("response_cache: true"); err == nil {
		t.Fatal("response_cache: true accepted")
	}
}
