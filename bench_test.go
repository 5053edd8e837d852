package kiln_test

import (
	"context"
	"os"
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

// BenchmarkPlanLoad times loading each shared model's plan as the plan
// cache does on a restart (kiln serve's cold start once plans are cached):
// read into memory (the default, safe from files changed in place) and
// memory-mapped (LoadOptions.Mmap). The plan is in the page cache, so
// this is the CPU cost of loading (checksum, decoding, engine
// preparation), not the disk's speed. Run with
//
//	go test -run XXX -bench BenchmarkPlanLoad -count 5 .
func BenchmarkPlanLoad(b *testing.B) {
	for _, name := range referenceModels {
		dir := needModel(b, name)
		cache := &kiln.PlanCache{Dir: b.TempDir()}
		m, res, err := cache.Load(context.Background(), filepath.Join(dir, "model.onnx"), kiln.BuildOptions{NoTiming: true})
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
		st, err := os.Stat(res.Path)
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range []struct {
			name string
			o    kiln.LoadOptions
		}{{"read", kiln.LoadOptions{}}, {"mmap", kiln.LoadOptions{Mmap: true}}} {
			b.Run(name+"/"+mode.name, func(b *testing.B) {
				b.SetBytes(st.Size())
				b.ReportAllocs()
				for b.Loop() {
					m, err := kiln.LoadWith(res.Path, mode.o)
					if err != nil {
						b.Fatal(err)
					}
					m.Close()
				}
				b.ReportMetric(float64(st.Size())/(1<<20), "plan-MiB")
			})
		}
	}
}
