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
