package repository

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// writeModel writes dir/name/<version>/model.onnx (the TinyCNN example) for
// each version, and config.pbtxt when cfg is not empty.
func writeModel(t *testing.T, dir, name, cfg string, versions ...string) {
	t.Helper()
	for _, v := range versions {
		p := filepath.Join(dir, name, v)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "model.onnx"), examples.TinyCNNModel, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if cfg != "" {
		if err := os.WriteFile(filepath.Join(dir, name, "config.pbtxt"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "plain", "", "1", "2")
	writeModel(t, dir, "all", `version_policy { all {} }`, "1", "3")
	writeModel(t, dir, "nobatch", `max_batch_size: 0`, "1")
	writeModel(t, dir, "badtype", `input { name: "image" data_type: TYPE_INT32 dims: [3, 32, 32] }`, "1")
	writeModel(t, dir, "badname", `input { name: "nope" data_type: TYPE_FP32 }`, "1")
	writeModel(t, dir, "badcfg", `max_batch_size: {`, "1")
	writeModel(t, dir, "specific", `version_policy { specific { versions: 9 } }`, "1")
	if err := os.MkdirAll(filepath.Join(dir, "broken", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "broken", "1", "model.onnx"), []byte("not onnx"), 0o644)

	writeModel(t, dir, "fixedbatch", "max_batch_size: 4", "1")
	os.WriteFile(filepath.Join(dir, "fixedbatch", "1", "model.onnx"), fixedBatchModel(t), 0o644)

	names, err := Names(dir)
	if err != nil || len(names) != 9 {
		t.Fatalf("Names = %v, %v", names, err)
	}
	tests := []struct {
		name     string
		want     error
		versions []int64
		maxBatch int
	}{
		{"plain", nil, []int64{2}, DefaultMaxBatchSize},
		{"all", nil, []int64{3, 1}, 0},
		{"nobatch", nil, []int64{1}, 0},
		{"badtype", ErrModel, nil, 0},
		{"badname", ErrModel, nil, 0},
		{"badcfg", ErrSyntax, nil, 0},
		{"specific", ErrNoVersion, nil, 0},
		{"broken", ErrModel, nil, 0},
		{"missing", ErrNotFound, nil, 0},
		{"fixedbatch", ErrModel, nil, 0},
		{"../x", ErrNotFound, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Load(dir, tt.name)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			defer m.Close()
			var got []int64
			for _, v := range m.Versions {
				got = append(got, v.Number)
			}
			if len(got) != len(tt.versions) || got[0] != tt.versions[0] {
				t.Errorf("versions = %v, want %v", got, tt.versions)
			}
			if m.Config.MaxBatchSize != tt.maxBatch {
				t.Errorf("max_batch_size = %d, want %d", m.Config.MaxBatchSize, tt.maxBatch)
			}
			in := m.Config.Inputs[0]
			if in.Name != "image" || in.DataType != tensor.Float32 {
				t.Errorf("input = %+v", in)
			}
		})
	}
}

func TestFromBytes(t *testing.T) {
	m, err := FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := m.Config
	if c.MaxBatchSize != DefaultMaxBatchSize || len(c.Inputs) != 1 || len(c.Outputs) != 1 {
		t.Fatalf("config %+v", c)
	}
	if got := c.Inputs[0].Dims; len(got) != 3 || got[0] != 3 {
		t.Errorf("input dims = %v, want [3 32 32]", got)
	}
	if got := c.Outputs[0].Dims; len(got) != 1 || got[0] != 10 {
		t.Errorf("output dims = %v, want [10]", got)
	}
	if _, err := FromBytes("x", []byte{1, 2, 3}); !errors.Is(err, ErrModel) {
		t.Errorf("bad bytes: err = %v", err)
	}
}

// fixedBatchModel is an ONNX model whose input has a fixed first dimension.
func fixedBatchModel(t *testing.T) []byte {
	t.Helper()
	b := ir.NewBuilder("fixed", 17)
	x := b.Input("x", tensor.Float32, ir.D(2), ir.D(3))
	b.Output(b.Op("Relu", []*ir.Value{x}), "y")
	m, err := onnx.FromGraph(b.Graph(), "kiln")
	if err != nil {
		t.Fatal(err)
	}
	return m.Marshal()
}
