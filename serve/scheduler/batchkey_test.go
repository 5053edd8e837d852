package scheduler

import (
	"sync/atomic"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// TestBatchKeyCached: batchKey with its latest-key cache answers every
// request as batchKey without it, whatever came before (a request of one
// input is matched against the cached input without making its key).
func TestBatchKeyCached(t *testing.T) {
	one := func(name string, dt tensor.DType, shape ...int) map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{name: {DType: dt, Shape: shape}}
	}
	two := map[string]*tensor.Tensor{
		"a": {DType: tensor.Float32, Shape: []int{2, 3}},
		"b": {DType: tensor.Int64, Shape: []int{2}},
	}
	seq := []map[string]*tensor.Tensor{
		one("image", tensor.Float32, 1, 3, 32, 32),
		one("image", tensor.Float32, 1, 3, 32, 32),
		one("image", tensor.Float32, 4, 3, 32, 32), // another batch size, same key when batched
		one("image", tensor.Float32, 1, 3, 16, 16),
		one("image", tensor.Float16, 1, 3, 16, 16),
		one("other", tensor.Float16, 1, 3, 16, 16),
		one("other", tensor.Float16, 1, 3, 16),
		one("other", tensor.Float16, 1, 3, 16, 1),
		one("other", tensor.Float16), // no batch dimension
		one("other", tensor.Float16, 0, 3, 16, 1),
		two,
		one("a", tensor.Float32, 2, 3),
		two,
		{"image": nil},
		one("image", tensor.Float32, 1, 3, 32, 32),
	}
	for _, batched := range []bool{true, false} {
		var cache atomic.Pointer[lastKey]
		for i, in := range seq {
			wantKey, wantSize, wantErr := batchKey(in, batched, nil)
			key, size, err := batchKey(in, batched, &cache)
			if key != wantKey || size != wantSize || (err == nil) != (wantErr == nil) {
				t.Errorf("batched %v, request %d: %q %d %v, want %q %d %v", batched, i, key, size, err, wantKey, wantSize, wantErr)
			}
		}
	}
}

// BenchmarkBatchKey: a one-input request's batch key, made (nil cache, as
// before the cache) and matched against the latest (cached).
func BenchmarkBatchKey(b *testing.B) {
	in := map[string]*tensor.Tensor{"image": {DType: tensor.Float32, Shape: []int{1, 3, 32, 32}}}
	for _, cached := range []bool{false, true} {
		name := "made"
		if cached {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			var cache *atomic.Pointer[lastKey]
			if cached {
				cache = new(atomic.Pointer[lastKey])
			}
			b.ReportAllocs()
			for range b.N {
				if _, _, err := batchKey(in, true, cache); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
