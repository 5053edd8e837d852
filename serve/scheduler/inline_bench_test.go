package scheduler

import (
	"context"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// echoModel answers its input as "y", allocating nothing itself.
type echoModel struct{ out map[string]*tensor.Tensor }

func (m *echoModel) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	m.out["y"] = in["x"]
	return m.out, nil
}

// TestInlineAllocs: a request that finds its instance idle runs on its
// caller's goroutine (runHere) with one allocation, the request's item
// (its result lives in it), whatever the options that keep it inline.
func TestInlineAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	cases := []struct {
		name string
		opts Options
	}{
		{"no batching", Options{}},
		{"batching without delay", Options{MaxBatchSize: 8, Batching: true}},
		{"two instances", Options{Instances: 2, MaxBatchSize: 8, Batching: true}},
		{"priorities", Options{MaxBatchSize: 8, Batching: true, PriorityLevels: 3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New(&echoModel{out: map[string]*tensor.Tensor{}}, c.opts, nil)
			defer s.Shutdown(context.Background())
			r := req(1, 1, 4)
			ctx := context.Background()
			for range 10 { // the batch key cached, the order buffer grown
				if _, err := s.Infer(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(200, func() {
				if _, err := s.Infer(ctx, r); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > 1 {
				t.Errorf("%.1f allocations an inline request, want 1 (the item)", allocs)
			}
		})
	}
}

// BenchmarkInferInline is the scheduler's own cost of a request that
// finds its instance idle (the model does nothing).
func BenchmarkInferInline(b *testing.B) {
	s := New(&echoModel{out: map[string]*tensor.Tensor{}}, Options{Instances: 2, MaxBatchSize: 8, Batching: true}, nil)
	defer s.Shutdown(context.Background())
	r := req(1, 1, 4)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Infer(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}
