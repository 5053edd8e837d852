package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/tensor"
)

// errBadValue is the fake model's input error.
var errBadValue = errors.New("bad value")

// pickyModel doubles "x" like fakeModel but fails a run holding a negative
// value, and its error quotes the first value of every row of the batch,
// as a real kernel's message quotes the offending data (a token id).
type pickyModel struct {
	fakeModel
	mu   sync.Mutex
	runs []int // batch size of every run
}

func (p *pickyModel) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	x := in["x"]
	p.mu.Lock()
	p.runs = append(p.runs, x.Shape[0])
	p.mu.Unlock()
	row := tensor.NumElements(x.Shape[1:])
	var firsts []float32
	bad := false
	for r := range x.Shape[0] {
		v := x.Float32s()[r*row]
		firsts = append(firsts, v)
		bad = bad || v < 0
	}
	if bad {
		return nil, fmt.Errorf("%w: rows start with %v", errBadValue, firsts)
	}
	return p.fakeModel.Run(ctx, in)
}

// TestBatchFailureIsolated: one request's bad input, batched with valid
// ones, fails only that request, whose error quotes only its own data.
func TestBatchFailureIsolated(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"one instance", Options{MaxBatchSize: 8, Batching: true, PreferredBatchSizes: []int{8}}},
		{"two instances", Options{Instances: 2, MaxBatchSize: 8, Batching: true, PreferredBatchSizes: []int{8}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &pickyModel{}
			m.gate = make(chan struct{})
			m.started = make(chan struct{}, 100)
			s := New(m, tt.opts, nil)
			defer s.Shutdown(context.Background())
			// occupy every instance so that the next requests queue up and
			// are batched together
			var hold sync.WaitGroup
			for range max(tt.opts.Instances, 1) {
				hold.Add(1)
				go func() { defer hold.Done(); s.Infer(context.Background(), req(1, 8, 2)) }()
				<-m.started
			}
			values := []float32{101, 102, 103, -999, 105, 106, 107, 108}
			errs := make([]error, len(values))
			var wg sync.WaitGroup
			for i, v := range values {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := s.Infer(context.Background(), req(v, 1, 2))
					if err == nil {
						checkDoubled(t, res, v)
					}
					errs[i] = err
				}()
			}
			for s.Pending() < len(values) {
				time.Sleep(time.Millisecond)
			}
			close(m.gate)
			wg.Wait()
			hold.Wait()
			for i, v := range values {
				err := errs[i]
				if v >= 0 {
					if err != nil {
						t.Errorf("valid request %v failed: %v", v, err)
					}
					continue
				}
				if !errors.Is(err, errBadValue) {
					t.Fatalf("bad request: err = %v, want errBadValue", err)
				}
				for _, other := range values {
					if other != v && strings.Contains(err.Error(), fmt.Sprint(other)) {
						t.Errorf("bad request's error %q quotes another request's value %v", err, other)
					}
				}
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			full := 0
			for _, n := range m.runs {
				if n == 8 {
					full++
				}
			}
			// the holding runs, then the 8 queued requests in one batch
			if want := max(tt.opts.Instances, 1) + 1; full != want {
				t.Errorf("runs %v: %d runs of 8, want %d (the queued requests batched)", m.runs, full, want)
			}
		})
	}
}

// TestStoppedWaitsForRunningBatch: Shutdown given up by its caller returns
// at once, but Stopped is closed only when the running batch has finished.
func TestStoppedWaitsForRunningBatch(t *testing.T) {
	s, _, release := blocked(t, Options{Instances: 2})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended context: err = %v", err)
	}
	select {
	case <-s.Stopped():
		t.Fatal("Stopped closed while a batch still runs")
	default:
	}
	release()
	<-s.Stopped()
	// a second Shutdown, now that nothing runs, succeeds
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}
