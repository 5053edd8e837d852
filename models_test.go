package kiln_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/conformance"
	"github.com/kilnai/kiln/tensor"
)

// sharedModels is where CI keeps the reference models (see ../shared/README.md).
const sharedModels = "../shared/models"

func needModel(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(sharedModels, name)
	if _, err := os.Stat(filepath.Join(p, "model.onnx")); err != nil {
		t.Skipf("needs %s/model.onnx (the shared reference models): %v", p, err)
	}
	return p
}

var referenceModels = []string{"mobilenet_v2", "squeezenet1_1", "resnet_mini", "bert_mini", "yolo_tiny"}

// TestReferenceModels runs every shared model on its test data set and
// compares with PyTorch's float32 outputs (the kiln run defaults).
func TestReferenceModels(t *testing.T) {
	for _, name := range referenceModels {
		t.Run(name, func(t *testing.T) {
			dir := needModel(t, name)
			m, err := kiln.Load(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := conformance.RunDataSet(context.Background(), m, filepath.Join(dir, "test_data_set_0"), 1e-3, 1e-4); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDynamicBatch checks that each row of a batch-4 run equals the batch-1
// run of that row, at the dynamic sizes the issue asks for.
func TestDynamicBatch(t *testing.T) {
	tests := []struct {
		model  string
		shapes map[string][]int // batch-4 shapes
	}{
		{"mobilenet_v2", map[string][]int{"input": {4, 3, 224, 224}}},
		{"squeezenet1_1", map[string][]int{"input": {4, 3, 224, 224}}},
		{"resnet_mini", map[string][]int{"input": {4, 3, 224, 224}}},
		{"bert_mini", map[string][]int{"input_ids": {4, 64}, "attention_mask": {4, 64}}},
		{"yolo_tiny", map[string][]int{"images": {4, 3, 416, 416}}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			dir := needModel(t, tt.model)
			if testing.Short() && tt.model == "yolo_tiny" {
				t.Skip("short mode")
			}
			m, err := kiln.Load(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			batch := map[string]*kiln.Tensor{}
			for name, shape := range tt.shapes {
				x := tensor.New(m.InputType(name), shape...)
				for i := 0; i < x.Len(); i++ {
					switch {
					case name == "attention_mask":
						// ragged masks: row r attends to its first 64-8r tokens
						row, col := i/shape[1], i%shape[1]
						x.SetFloat(i, b2f(col < shape[1]-8*row))
					case x.DType == tensor.Int64:
						x.SetFloat(i, float64(rng.IntN(2048)))
					default:
						x.SetFloat(i, rng.Float64()*2-1)
					}
				}
				batch[name] = x
			}
			full, err := m.Run(context.Background(), batch)
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < 4; r++ {
				one := map[string]*kiln.Tensor{}
				for name, x := range batch {
					one[name] = row(x, r)
				}
				single, err := m.Run(context.Background(), one)
				if err != nil {
					t.Fatal(err)
				}
				for name, y := range full {
					if c := conformance.Compare(row(y, r), single[name], 1e-3, 1e-4); !c.OK {
						t.Fatalf("output %s row %d differs from its batch-1 run: %s", name, r, c.Reason)
					}
				}
			}
		})
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// row returns row r of x's leading dimension as a tensor with leading dim 1.
func row(x *kiln.Tensor, r int) *kiln.Tensor {
	n := x.Len() / x.Shape[0]
	shape := append([]int{1}, x.Shape[1:]...)
	sz := x.DType.Size()
	out, err := tensor.FromBytes(x.DType, shape, x.Data[r*n*sz:(r+1)*n*sz])
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return out
}
