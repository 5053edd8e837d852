package serve

import (
	"errors"
	"testing"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// TestShapeCheckVerdicts: the verdicts of tinycnn's shape check, each
// asked twice and after another shape (the cache and its latest-verdict
// fast path answer as shape inference did).
func TestShapeCheckVerdicts(t *testing.T) {
	c := newShapeCheck(examples.TinyCNN())
	in := func(shape ...int) map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{"image": {DType: tensor.Float32, Shape: shape}}
	}
	for _, tc := range []struct {
		name  string
		shape []int
		ok    bool
	}{
		{"one image", []int{1, 3, 32, 32}, true},
		{"a batch of 4", []int{4, 3, 32, 32}, true},
		{"wrong channels", []int{1, 4, 32, 32}, false},
		{"one image again", []int{1, 3, 32, 32}, true},
		{"wrong channels again", []int{1, 4, 32, 32}, false},
	} {
		for range 2 {
			err := c.check(in(tc.shape...))
			if got := err == nil; got != tc.ok {
				t.Fatalf("%s %v: error %v, want ok %v", tc.name, tc.shape, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v does not wrap ErrInvalid", tc.name, err)
			}
		}
	}
}

// BenchmarkShapeCheck: the shape check of requests of one shape from
// concurrent callers (kiln serve's steady state).
func BenchmarkShapeCheck(b *testing.B) {
	c := newShapeCheck(examples.TinyCNN())
	b.RunParallel(func(pb *testing.PB) {
		in := map[string]*tensor.Tensor{"image": {DType: tensor.Float32, Shape: []int{1, 3, 32, 32}}}
		for pb.Next() {
			if err := c.check(in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
