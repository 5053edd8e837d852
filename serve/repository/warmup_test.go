package repository

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

func TestWarmupInputs(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "warmup"), 0o755)
	var raw []byte
	for _, v := range []float32{1, 2, 3, 4, 5, 6} {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	os.WriteFile(filepath.Join(dir, "warmup", "six"), raw, 0o644)
	var strs []byte
	for _, s := range []string{"ab", "", "xyz"} {
		strs = binary.LittleEndian.AppendUint32(strs, uint32(len(s)))
		strs = append(strs, s...)
	}
	os.WriteFile(filepath.Join(dir, "warmup", "strs"), strs, 0o644)
	os.WriteFile(filepath.Join(dir, "warmup", "badstr"), []byte{9, 0, 0, 0, 'a'}, 0o644)

	in := func(dt tensor.DType, src WarmupSource, file string, dims ...int64) map[string]WarmupInput {
		return map[string]WarmupInput{"x": {DataType: dt, Dims: dims, Source: src, File: file}}
	}
	tests := []struct {
		name     string
		w        Warmup
		maxBatch int
		shape    []int
		check    func(*tensor.Tensor) bool
		err      bool
	}{
		{"zeros batched", Warmup{BatchSize: 2, Inputs: in(tensor.Float32, ZeroData, "", 3)}, 4, []int{2, 3},
			func(x *tensor.Tensor) bool { return reflect.DeepEqual(x.Float32s(), make([]float32, 6)) }, false},
		{"zeros unbatched", Warmup{BatchSize: 1, Inputs: in(tensor.Int64, ZeroData, "", 2, 2)}, 0, []int{2, 2},
			func(x *tensor.Tensor) bool { return reflect.DeepEqual(x.Int64s(), make([]int64, 4)) }, false},
		{"random floats in [0,1)", Warmup{Name: "r", BatchSize: 1, Inputs: in(tensor.Float32, RandomData, "", 100)}, 0, []int{100},
			func(x *tensor.Tensor) bool {
				distinct := map[float32]bool{}
				for _, v := range x.Float32s() {
					if v < 0 || v >= 1 {
						return false
					}
					distinct[v] = true
				}
				return len(distinct) > 50
			}, false},
		{"random ints are 0 or 1", Warmup{BatchSize: 1, Inputs: in(tensor.Int32, RandomData, "", 64)}, 0, []int{64},
			func(x *tensor.Tensor) bool {
				ones := 0
				for _, v := range x.Int32s() {
					if v != 0 && v != 1 {
						return false
					}
					ones += int(v)
				}
				return ones > 0 && ones < 64
			}, false},
		{"random fp16", Warmup{BatchSize: 1, Inputs: in(tensor.Float16, RandomData, "", 8)}, 0, []int{8},
			func(x *tensor.Tensor) bool {
				for _, v := range x.ToFloat32() {
					if v < 0 || v > 1 {
						return false
					}
				}
				return true
			}, false},
		{"file", Warmup{BatchSize: 2, Inputs: in(tensor.Float32, FileData, "six", 3)}, 2, []int{2, 3},
			func(x *tensor.Tensor) bool { return reflect.DeepEqual(x.Float32s(), []float32{1, 2, 3, 4, 5, 6}) }, false},
		{"string file", Warmup{BatchSize: 1, Inputs: in(tensor.String, FileData, "strs", 3)}, 0, []int{3},
			func(x *tensor.Tensor) bool { return reflect.DeepEqual(x.Strings, []string{"ab", "", "xyz"}) }, false},
		{"short file", Warmup{BatchSize: 1, Inputs: in(tensor.Float32, FileData, "six", 7)}, 0, nil, nil, true},
		{"missing file", Warmup{BatchSize: 1, Inputs: in(tensor.Float32, FileData, "none", 1)}, 0, nil, nil, true},
		{"bad string file", Warmup{BatchSize: 1, Inputs: in(tensor.String, FileData, "badstr", 1)}, 0, nil, nil, true},
		{"short string file", Warmup{BatchSize: 1, Inputs: in(tensor.String, FileData, "strs", 4)}, 0, nil, nil, true},
		{"too large", Warmup{BatchSize: 1, Inputs: in(tensor.Float32, ZeroData, "", 1<<20, 1<<20)}, 0, nil, nil, true},
		{"batch above max", Warmup{BatchSize: 3, Inputs: in(tensor.Float32, ZeroData, "", 1)}, 2, nil, nil, true},
		{"batch without batching", Warmup{BatchSize: 2, Inputs: in(tensor.Float32, ZeroData, "", 1)}, 0, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WarmupInputs(dir, tt.w, tt.maxBatch)
			if tt.err {
				if !errors.Is(err, ErrWarmup) {
					t.Fatalf("err = %v, want ErrWarmup", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			x := got["x"]
			if !reflect.DeepEqual(x.Shape, tt.shape) || !tt.check(x) {
				t.Errorf("got %v", x)
			}
			again, _ := WarmupInputs(dir, tt.w, tt.maxBatch)
			if !reflect.DeepEqual(again["x"], x) {
				t.Error("a second call made different values")
			}
		})
	}
}
