package repository

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// unbatchedOutputModel is an ONNX model whose input has a variable first
// dimension and whose output does not (a sum over the batch).
func unbatchedOutputModel(t *testing.T) []byte {
	t.Helper()
	b := ir.NewBuilder("sum", 17)
	x := b.Input("x", tensor.Float32, ir.S("N"), ir.D(3))
	axes := b.Const("axes", tensor.FromInt64([]int64{0}, 1))
	y := b.Op("ReduceSum", []*ir.Value{x, axes}, ir.IntAttr("keepdims", 0))
	b.Output(y, "y")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}

// TestAutoCompleteDynamicBatching: a config completed from the model gets
// dynamic_batching { } when the model batches and max_batch_size is above
// 1, as Triton's ONNX Runtime backend completes it; a config that lists its
// inputs and outputs, sets a scheduler or does not batch is left alone.
func TestAutoCompleteDynamicBatching(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, cfg string
		model     []byte // nil: tinycnn
		want      bool   // dynamic batching on
		delay     uint64 // its max_queue_delay_microseconds
	}{
		{"noconfig", "", nil, true, 0},
		{"maxbatch", "max_batch_size: 8", nil, true, 0},
		{"maxbatch2", "max_batch_size: 2\ninstance_group { count: 2 kind: KIND_CPU }", nil, true, 0},
		{"maxbatch1", "max_batch_size: 1", nil, false, 0},
		{"nobatch", "max_batch_size: 0", nil, false, 0},
		{"ownbatcher", "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 100 }", nil, true, 100},
		{"inputsonly", "max_batch_size: 8\ninput { name: \"image\" data_type: TYPE_FP32 dims: [3, 32, 32] }", nil, true, 0},
		{"explicit", "max_batch_size: 8\ninput { name: \"image\" data_type: TYPE_FP32 dims: [3, 32, 32] }\noutput { name: \"probabilities\" data_type: TYPE_FP32 dims: [10] }", nil, false, 0},
		{"fixedbatch", "", nil, false, 0},
		{"sumoutput", "", nil, false, 0},
	}
	for _, tt := range tests {
		writeModel(t, dir, tt.name, tt.cfg, "1")
	}
	os.WriteFile(filepath.Join(dir, "fixedbatch", "1", "model.onnx"), fixedBatchModel(t), 0o644)
	os.WriteFile(filepath.Join(dir, "sumoutput", "1", "model.onnx"), unbatchedOutputModel(t), 0o644)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Load(dir, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			db := m.Config.DynamicBatching
			if (db != nil) != tt.want {
				t.Fatalf("dynamic_batching = %+v, want on: %v (max_batch_size %d)", db, tt.want, m.Config.MaxBatchSize)
			}
			if db != nil && db.MaxQueueDelayMicroseconds != tt.delay {
				t.Errorf("max_queue_delay_microseconds = %d, want %d", db.MaxQueueDelayMicroseconds, tt.delay)
			}
			// the model config the protocols show says the same
			if got := m.Config.ModelConfig().GetDynamicBatching() != nil; got != tt.want {
				t.Errorf("ModelConfig's dynamic_batching set: %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCompletedInstanceGroups: the loaded config lists the instances kiln
// placed, as Triton's completed config does: the default group (MODEL_0,
// KIND_CPU, 2 for the ONNX Runtime platform, 1 for another), unnamed groups
// named MODEL_N, KIND_AUTO on the CPU listed as KIND_CPU; and the config the
// protocols show says the same.
func TestCompletedInstanceGroups(t *testing.T) {
	dir := t.TempDir()
	type group struct {
		name, kind string
		count      int32
	}
	tests := []struct {
		name, cfg string
		want      []group
	}{
		{"noconfig", "", []group{{"noconfig_0", "KIND_CPU", 2}}},
		{"nogroups", "max_batch_size: 8", []group{{"nogroups_0", "KIND_CPU", 2}}},
		{"emptygroup", "instance_group { count: 0 }", []group{{"emptygroup_0", "KIND_CPU", 2}}},
		{"backend", "backend: \"kiln\"", []group{{"backend_0", "KIND_CPU", 1}}},
		{"auto", "instance_group { count: 3 }", []group{{"auto_0", "KIND_CPU", 3}}},
		{"named", "instance_group { name: \"a\" count: 1 kind: KIND_CPU }\ninstance_group { count: 2 kind: KIND_CPU }",
			[]group{{"a", "KIND_CPU", 1}, {"named_1", "KIND_CPU", 2}}},
	}
	for _, tt := range tests {
		writeModel(t, dir, tt.name, tt.cfg, "1")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Load(dir, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			var got []group
			for _, g := range m.Config.ModelConfig().GetInstanceGroup() {
				got = append(got, group{g.GetName(), g.GetKind().String(), g.GetCount()})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("instance_group = %v, want %v", got, tt.want)
			}
			if n := len(m.Versions[0].Instances); n != m.Config.Instances() {
				t.Errorf("%d instances placed, the config lists %d", n, m.Config.Instances())
			}
		})
	}
}
