package quant

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

func writePB(t *testing.T, path, name string, x *tensor.Tensor) {
	t.Helper()
	tp := &onnx.TensorProto{DataType: x.DType, Name: name, RawData: x.Data}
	for _, d := range x.Shape {
		tp.Dims = append(tp.Dims, int64(d))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, tp.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func twoInputs() []*ir.Value {
	return []*ir.Value{
		{Name: "img", Type: ir.Type{DType: tensor.Float32, Shape: ir.Shape{ir.S("batch"), ir.D(3)}}},
		{Name: "ids", Type: ir.Type{DType: tensor.Int64, Shape: ir.Shape{ir.S("batch")}}},
	}
}

func TestLoadBatches(t *testing.T) {
	img := tensor.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	ids := tensor.FromInt64([]int64{7, 8}, 2)
	tests := []struct {
		name    string
		files   map[string]any // path -> tensor, or [2]any{name, tensor}
		dir     string
		batches int
		err     string
	}{
		{name: "one folder by position", files: map[string]any{"input_0.pb": img, "input_1.pb": ids}, batches: 1},
		{name: "by name, swapped", files: map[string]any{"input_0.pb": [2]any{"ids", ids}, "input_1.pb": [2]any{"img", img}}, batches: 1},
		{name: "data sets", files: map[string]any{
			"test_data_set_0/input_0.pb": img, "test_data_set_0/input_1.pb": ids,
			"test_data_set_1/input_0.pb": img, "test_data_set_1/input_1.pb": ids, "notes/readme.txt": nil,
		}, batches: 2},
		{name: "missing input", files: map[string]any{"input_0.pb": img}, err: `no file gives input "ids"`},
		{name: "gap", files: map[string]any{"input_0.pb": img, "input_2.pb": ids}, err: "input_1.pb is missing"},
		{name: "wrong shape", files: map[string]any{"input_0.pb": tensor.FromFloat32([]float32{1, 2}, 1, 2), "input_1.pb": ids},
			err: `input_0.pb: input "img": shape [1,2], the model expects [batch,3]`},
		{name: "wrong type", files: map[string]any{"input_0.pb": img, "input_1.pb": tensor.FromFloat32([]float32{1, 2}, 2)},
			err: `input "ids": data type float32, the model expects int64`},
		{name: "batch mismatch", files: map[string]any{"input_0.pb": img, "input_1.pb": tensor.FromInt64([]int64{1}, 1)},
			err: "(batch) is 1, but batch is 2"},
		{name: "same input twice", files: map[string]any{"input_0.pb": [2]any{"img", img}, "input_1.pb": [2]any{"img", img}}, err: "both give"},
		{name: "too many", files: map[string]any{"input_0.pb": img, "input_1.pb": ids, "input_2.pb": ids}, err: "takes 2 inputs"},
		{name: "empty", files: map[string]any{"x/readme.txt": nil}, err: "no input_N.pb"},
		{name: "NaN", files: map[string]any{
			"test_data_set_0/input_0.pb": img, "test_data_set_0/input_1.pb": ids,
			"test_data_set_1/input_0.pb": tensor.FromFloat32([]float32{1, 2, 3, 4, float32(math.NaN()), 6}, 2, 3), "test_data_set_1/input_1.pb": ids,
		}, err: `test_data_set_1/input_0.pb: input "img": element 4 is NaN`},
		{name: "infinity", files: map[string]any{"input_0.pb": tensor.FromFloat32([]float32{float32(math.Inf(-1)), 2, 3, 4, 5, 6}, 2, 3), "input_1.pb": ids},
			err: `input_0.pb: input "img": element 0 is -Inf`},
		{name: "no such dir", dir: "nope", err: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, x := range tc.files {
				path := filepath.Join(dir, p)
				switch x := x.(type) {
				case *tensor.Tensor:
					writePB(t, path, "", x)
				case [2]any:
					writePB(t, path, x[0].(string), x[1].(*tensor.Tensor))
				default:
					os.MkdirAll(filepath.Dir(path), 0o755)
					os.WriteFile(path, []byte("hi"), 0o644)
				}
			}
			if tc.dir != "" {
				dir = filepath.Join(dir, tc.dir)
			}
			got, err := LoadBatches(dir, twoInputs())
			if tc.err != "" {
				if !errors.Is(err, ErrData) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want ErrData with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.batches {
				t.Fatalf("%d batches, want %d", len(got), tc.batches)
			}
			for _, b := range got {
				if len(b) != 2 || b["img"].Float32s()[5] != 6 || b["ids"].Int64s()[1] != 8 {
					t.Errorf("batch %v", b)
				}
			}
		})
	}
}

func TestRandomBatches(t *testing.T) {
	in := twoInputs()
	a, err := RandomBatches(in, map[string][]int{"img": {4, 3}}, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := RandomBatches(in, map[string][]int{"img": {4, 3}}, 3, 7)
	if len(a) != 3 {
		t.Fatalf("%d batches", len(a))
	}
	for i := range a {
		if dimsString(a[i]["img"].Shape) != "[4,3]" || dimsString(a[i]["ids"].Shape) != "[4]" {
			t.Errorf("shapes %v %v: the batch size given for img must carry to ids", a[i]["img"].Shape, a[i]["ids"].Shape)
		}
		if string(a[i]["img"].Data) != string(b[i]["img"].Data) {
			t.Error("same seed, different data")
		}
		for _, v := range a[i]["ids"].Int64s() {
			if v < 0 || v >= 100 {
				t.Errorf("id %d outside [0, 100)", v)
			}
		}
	}
	if string(a[0]["img"].Data) == string(a[1]["img"].Data) {
		t.Error("two batches are equal")
	}
	if _, err := RandomBatches(in, map[string][]int{"img": {4, 5}}, 1, 1); !errors.Is(err, ErrData) {
		t.Errorf("bad shape: %v", err)
	}
	one, err := RandomBatches(in, nil, 1, 1)
	if err != nil || one[0]["img"].Shape[0] != 1 {
		t.Errorf("default batch: %v %v", one, err)
	}
}
