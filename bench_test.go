package kiln_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/tensor"
)

// BenchmarkModels times batch-1 inference of each shared model (the same
// shapes as bench/cpu-models.sh, which compares with ONNX Runtime).
func BenchmarkModels(b *testing.B) {
	shapes := map[string]map[string][]int{
		"resnet_mini":   {"input": {1, 3, 224, 224}},
		"mobilenet_v2":  {"input": {1, 3, 224, 224}},
		"squeezenet1_1": {"input": {1, 3, 224, 224}},
		"bert_mini":     {"input_ids": {1, 128}, "attention_mask": {1, 128}},
		"yolo_tiny":     {"images": {1, 3, 320, 320}},
	}
	for _, name := range referenceModels {
		b.Run(name, func(b *testing.B) {
			dir := needModel(b, name)
			m, err := kiln.Load(filepath.Join(dir, "model.onnx"))
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			in := map[string]*kiln.Tensor{}
			for n, s := range shapes[name] {
				x := tensor.New(m.InputType(n), s...)
				for i := 0; i < x.Len(); i++ {
					x.SetFloat(i, float64(i%7))
				}
				in[n] = x
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.Run(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
