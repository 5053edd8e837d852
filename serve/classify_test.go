package serve

import (
	"math"
	"slices"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

func TestClassify(t *testing.T) {
	f32 := tensor.FromFloat32([]float32{0.1, 0.7, 0.2, 0.7, 0.3, 0.9}, 2, 3)
	nan := tensor.FromFloat32([]float32{float32(math.NaN()), 1, 2}, 3)
	i64 := tensor.FromInt64([]int64{5, -3, 9}, 3)
	tests := []struct {
		name    string
		t       *tensor.Tensor
		k       int
		batched bool
		labels  []string
		shape   []int
		want    []string
	}{
		{"batched rows, labels", f32, 2, true, []string{"a", "b", "c"}, []int{2, 2},
			[]string{"0.700000:1:b", "0.200000:2:c", "0.900000:2:c", "0.700000:0:a"}},
		{"ties by lower index, unbatched, no labels", f32, 3, false, nil, []int{3},
			[]string{"0.900000:5", "0.700000:1", "0.700000:3"}},
		{"k above the classes", f32, 9, true, nil, []int{2, 3},
			[]string{"0.700000:1", "0.200000:2", "0.100000:0", "0.900000:2", "0.700000:0", "0.300000:1"}},
		{"labels shorter than the classes", i64, 2, false, []string{"x"}, []int{2}, []string{"9:2", "5:0:x"}},
		{"NaN last", nan, 3, false, nil, []int{3}, []string{"2.000000:2", "1.000000:1", "NaN:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := classify(tt.t, tt.k, tt.batched, tt.labels)
			if err != nil {
				t.Fatal(err)
			}
			if got.DType != tensor.String || !slices.Equal(got.Shape, tt.shape) || !slices.Equal(got.Strings, tt.want) {
				t.Errorf("got %v %v %q, want %v %q", got.DType, got.Shape, got.Strings, tt.shape, tt.want)
			}
		})
	}
	if _, err := classify(&tensor.Tensor{DType: tensor.String, Shape: []int{1}, Strings: []string{"x"}}, 1, false, nil); err == nil {
		t.Error("classifying a BYTES output: no error")
	}
}
