package repository

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

func TestParseConfigTriton(t *testing.T) {
	b, err := os.ReadFile("testdata/densenet.pbtxt")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(string(b))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Name: "densenet", Platform: "onnxruntime_onnx", MaxBatchSize: 8,
		Inputs:         []IO{{Name: "data_0", DataType: tensor.Float32, Dims: []int64{3, 224, 224}}},
		Outputs:        []IO{{Name: "fc6_1", DataType: tensor.Float32, Dims: []int64{1000, -1}}},
		InstanceGroups: []InstanceGroup{{Count: 2, Kind: "KIND_CPU"}},
		DynamicBatching: &DynamicBatching{
			PreferredBatchSize: []int{4, 8}, MaxQueueDelayMicroseconds: 100,
			PriorityLevels: 2, DefaultPriorityLevel: 2,
			DefaultQueuePolicy:  QueuePolicy{TimeoutAction: Delay, DefaultTimeoutMicroseconds: 5000, AllowTimeoutOverride: true, MaxQueueSize: 16},
			PriorityQueuePolicy: map[uint64]QueuePolicy{1: {TimeoutAction: Reject, MaxQueueSize: 4}},
		},
		VersionPolicy: VersionPolicy{Kind: "specific", NumVersions: 1, Versions: []int64{1, 3}},
		Parameters:    map[string]string{"intra_op_thread_count": "2"},
		Warmup: []Warmup{
			{Name: "zeros", BatchSize: 2, Count: 3, Inputs: map[string]WarmupInput{"data_0": {DataType: tensor.Float32, Dims: []int64{3, 224, 224}}}},
			{Name: "file", BatchSize: 1, Count: 1, Inputs: map[string]WarmupInput{"data_0": {DataType: tensor.Float32, Dims: []int64{3, 224, 224}, Source: FileData, File: "raw"}}},
		},
	}
	warnings := c.Warnings
	c.Warnings = nil
	if c.Raw.GetName() != "densenet" || c.Raw.GetDynamicBatching().GetDefaultQueuePolicy().GetMaxQueueSize() != 16 {
		t.Errorf("Raw = %v, want the config.pbtxt as a ModelConfig", c.Raw)
	}
	c.Raw = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "optimization") {
		t.Errorf("warnings = %q, want optimization named", warnings)
	}
	if c.Instances() != 2 {
		t.Errorf("Instances() = %d, want 2", c.Instances())
	}
}

func TestParseConfigForms(t *testing.T) {
	tests := []struct {
		name, src string
		check     func(*Config) bool
	}{
		{"angle brackets and semicolons", `name: "a"; input < name: "x" data_type: TYPE_INT64 dims: -1 >;`,
			func(c *Config) bool { return c.Inputs[0].DataType == tensor.Int64 && c.Inputs[0].Dims[0] == -1 }},
		{"repeated scalar fields", `dynamic_batching { preferred_batch_size: 2 preferred_batch_size: 4 }`,
			func(c *Config) bool { return reflect.DeepEqual(c.DynamicBatching.PreferredBatchSize, []int{2, 4}) }},
		{"single quotes and concatenation", `name: 'a' "b"`, func(c *Config) bool { return c.Name == "ab" }},
		{"hex", `max_batch_size: 0x10`, func(c *Config) bool { return c.MaxBatchSize == 16 }},
		{"latest", `version_policy { latest { num_versions: 2 } }`, func(c *Config) bool { return c.VersionPolicy.NumVersions == 2 }},
		{"all", `version_policy { all {} }`, func(c *Config) bool { return c.VersionPolicy.Kind == "all" }},
		{"empty", ``, func(c *Config) bool { return c.VersionPolicy.Kind == "latest" && c.Instances() == 2 }},
		{"empty list", `input []`, func(c *Config) bool { return len(c.Inputs) == 0 }},
		{"bool forms", `input { name: "x" optional: true }`, func(c *Config) bool { return c.Inputs[0].Optional }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      error
	}{
		{"unterminated string", `name: "a`, ErrSyntax},
		{"missing brace", `input { name: "x"`, ErrSyntax},
		{"stray brace", `}`, ErrSyntax},
		{"no colon", `name "a"`, ErrSyntax},
		{"bad char", `name: @`, ErrSyntax},
		{"not an int", `max_batch_size: "8"`, ErrSyntax},
		{"negative", `max_batch_size: -1`, ErrConfig},
		{"unknown type", `input { name: "x" data_type: TYPE_FOO }`, ErrConfig},
		{"bad dim", `input { name: "x" dims: -2 }`, ErrConfig},
		{"duplicate io", `input { name: "x" } output { name: "x" }`, ErrConfig},
		{"unnamed io", `input { dims: 1 }`, ErrConfig},
		{"bad action", `dynamic_batching { default_queue_policy { timeout_action: DROP } }`, ErrConfig},
		{"preferred too big", `max_batch_size: 4 dynamic_batching { preferred_batch_size: 8 }`, ErrConfig},
		{"default level too big", `dynamic_batching { priority_levels: 2 default_priority_level: 3 }`, ErrConfig},
		{"policy level", `dynamic_batching { priority_levels: 1 priority_queue_policy { key: 2 value {} } }`, ErrConfig},
		{"version policy", `version_policy { newest {} }`, ErrConfig},
		{"scalar message", `dynamic_batching: 3`, ErrConfig},
		{"warmup without inputs", `model_warmup { name: "w" }`, ErrConfig},
		{"warmup without source", `model_warmup { inputs { key: "x" value { data_type: TYPE_FP32 } } }`, ErrConfig},
		{"warmup two sources", `model_warmup { inputs { key: "x" value { data_type: TYPE_FP32 zero_data: true random_data: true } } }`, ErrConfig},
		{"warmup false source", `model_warmup { inputs { key: "x" value { data_type: TYPE_FP32 zero_data: false } } }`, ErrConfig},
		{"warmup without type", `model_warmup { inputs { key: "x" value { zero_data: true } } }`, ErrConfig},
		{"warmup duplicate input", `model_warmup { inputs { key: "x" value { data_type: TYPE_FP32 zero_data: true } } inputs { key: "x" value { data_type: TYPE_FP32 zero_data: true } } }`, ErrConfig},
		{"warmup file outside", `model_warmup { inputs { key: "x" value { data_type: TYPE_FP32 input_data_file: "../x" } } }`, ErrConfig},
		{"warmup negative dim", `model_warmup { inputs { key: "x" value { data_type: TYPE_FP32 dims: -1 zero_data: true } } }`, ErrConfig},
		{"warmup batch above max", `max_batch_size: 2 model_warmup { batch_size: 4 inputs { key: "x" value { data_type: TYPE_FP32 zero_data: true } } }`, ErrConfig},
		{"warmup batch without batching", `model_warmup { batch_size: 2 inputs { key: "x" value { data_type: TYPE_FP32 zero_data: true } } }`, ErrConfig},
		{"deep", strings.Repeat("a {", 100) + strings.Repeat("}", 100), ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(tt.src)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile("testdata/densenet.pbtxt"); err == nil {
		f.Add(string(b))
	}
	f.Add(`name: "a" input [ { name: "x", dims: [1, -1] } ]`)
	f.Add(`a < b: 'c' > d: [ {}, {} ]`)
	f.Add(`{"max_batch_size": 4, "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3, "-1"]}], "sequence_batching": {"oldest": {}}}`)
	f.Fuzz(func(t *testing.T, src string) {
		c, err := ParseConfig(src)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrConfig) {
			t.Fatalf("error %v is neither ErrSyntax nor ErrConfig", err)
		}
		if err == nil {
			c.ModelConfig() // the message shown over HTTP and gRPC
		}
		// the same text as a load request's JSON config override
		c, err = ParseConfigJSON([]byte(src))
		if err == nil {
			c.ModelConfig()
		} else if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrConfig) {
			t.Fatalf("JSON: error %v is neither ErrSyntax nor ErrConfig", err)
		}
	})
}
