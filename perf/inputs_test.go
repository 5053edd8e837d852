package perf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

func TestMakeInputs(t *testing.T) {
	image := []inputMeta{{Name: "image", Datatype: "FP32", Shape: []int64{-1, 3, 2, 2}}}
	seq := []inputMeta{{Name: "ids", Datatype: "INT64", Shape: []int64{-1, -1}}}
	dir := t.TempDir()
	write := func(path string, content string) string {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	save := func(path, name string, v float32, batch int) {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		x := tensor.New(tensor.Float32, batch, 3, 2, 2)
		for i := range x.Len() {
			x.SetFloat(i, float64(v))
		}
		if err := onnx.SaveTensor(p, name, x); err != nil {
			t.Fatal(err)
		}
	}
	save("sets/test_data_set_0/input_0.pb", "image", 0, 1)
	save("sets/test_data_set_1/input_0.pb", "image", 1, 2)
	save("sets/test_data_set_10/input_0.pb", "image", 10, 1)
	save("flat/input_0.pb", "", 3, 1) // no name: the model's first input
	save("wrong/input_0.pb", "pixels", 3, 1)
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	js := write("in.json", `{"data": [{"image": [1,2,3,4,5,6,7,8,9,10,11,12]}, {"image": {"content": [0,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1,1,1,1], "shape": [2,3,2,2]}}]}`)
	short := write("short.json", `{"data": [{"image": [1,2,3]}]}`)
	unknown := write("unknown.json", `{"data": [{"pixels": [1]}]}`)
	bad := write("bad.json", `{"data": [{"image": "x"}]}`)
	none := write("none.json", `{"data": []}`)

	tests := []struct {
		name    string
		md      []inputMeta
		o       InputOptions
		shapes  [][]int // the shape of each set's first input
		first   []float64
		wantErr string
	}{
		{"random, batch 1", image, InputOptions{BatchSize: 1}, [][]int{{1, 3, 2, 2}}, nil, ""},
		{"random, batch 4", image, InputOptions{BatchSize: 4}, [][]int{{4, 3, 2, 2}}, nil, ""},
		{"random with --shape", seq, InputOptions{BatchSize: 1, Shapes: map[string][]int{"ids": {2, 7}}}, [][]int{{2, 7}}, nil, ""},
		{"random, variable dimension without --shape", seq, InputOptions{BatchSize: 1}, nil, nil, "give its shape with --shape ids:DIMS"},
		{"--shape of the wrong rank", image, InputOptions{BatchSize: 1, Shapes: map[string][]int{"image": {1, 3}}}, nil, nil, "rank 2"},
		{"--shape against a fixed dimension", image, InputOptions{BatchSize: 1, Shapes: map[string][]int{"image": {1, 4, 2, 2}}}, nil, nil, "dimension 1 is 4"},
		{"--shape of an unknown input", image, InputOptions{BatchSize: 1, Shapes: map[string][]int{"x": {1}}}, nil, nil, `no input "x"`},
		{"test_data_set folders in order", image, InputOptions{Data: filepath.Join(dir, "sets")}, [][]int{{1, 3, 2, 2}, {2, 3, 2, 2}, {1, 3, 2, 2}}, []float64{0, 1, 10}, ""},
		{"a folder of input_N.pb", image, InputOptions{Data: filepath.Join(dir, "flat")}, [][]int{{1, 3, 2, 2}}, []float64{3}, ""},
		{"a tensor for another input", image, InputOptions{Data: filepath.Join(dir, "wrong")}, nil, nil, `has "pixels", which the model does not take`},
		{"an empty folder", image, InputOptions{Data: filepath.Join(dir, "empty")}, nil, nil, "no input_N.pb files and no test_data_set_N folders"},
		{"a missing folder", image, InputOptions{Data: filepath.Join(dir, "nope")}, nil, nil, "no such file"},
		{"JSON", image, InputOptions{BatchSize: 1, Data: js}, [][]int{{1, 3, 2, 2}, {2, 3, 2, 2}}, []float64{1, 0}, ""},
		{"JSON with too few values", image, InputOptions{BatchSize: 1, Data: short}, nil, nil, "3 values for shape [1 3 2 2] (12)"},
		{"JSON for another input", image, InputOptions{BatchSize: 1, Data: unknown}, nil, nil, `no input "pixels"`},
		{"JSON of the wrong form", image, InputOptions{BatchSize: 1, Data: bad}, nil, nil, "want an array of numbers"},
		{"JSON without entries", image, InputOptions{BatchSize: 1, Data: none}, nil, nil, `no "data" entries`},
		{"BYTES inputs", []inputMeta{{Name: "s", Datatype: "BYTES", Shape: []int64{1}}}, InputOptions{BatchSize: 1}, nil, nil, "BYTES inputs are not supported"},
		{"no inputs", nil, InputOptions{BatchSize: 1}, nil, nil, "lists no inputs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sets, err := makeInputs(tt.md, tt.o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("makeInputs = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(sets) != len(tt.shapes) {
				t.Fatalf("%d sets, want %d", len(sets), len(tt.shapes))
			}
			for i, set := range sets {
				x := set[tt.md[0].Name]
				if tensor.ShapeString(x.Shape) != tensor.ShapeString(tt.shapes[i]) {
					t.Errorf("set %d: shape %v, want %v", i, x.Shape, tt.shapes[i])
				}
				if tt.first != nil && x.Float(0) != tt.first[i] {
					t.Errorf("set %d: first value %g, want %g", i, x.Float(0), tt.first[i])
				}
			}
		})
	}
}
