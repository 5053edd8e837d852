package scheduler

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/tensor"
)

// whereModel records, for each run, whether it ran on a caller's goroutine
// (runHere) or on an instance goroutine, and whether two runs ever
// overlapped; it blocks on gate (when not nil) before answering.
type whereModel struct {
	gate    chan struct{}
	started chan string
	mu      sync.Mutex
	running int
	overlap bool
	where   []string
}

func (m *whereModel) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	buf := make([]byte, 16<<10)
	stack := string(buf[:runtime.Stack(buf, false)])
	where := "instance"
	switch {
	case strings.Contains(stack, "(*Scheduler).runHere"):
		where = "caller"
	case strings.Contains(stack, "(*Scheduler).warm"):
		where = "warmup"
	}
	m.mu.Lock()
	m.running++
	m.overlap = m.overlap || m.running > 1
	m.where = append(m.where, where)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running--
		m.mu.Unlock()
	}()
	if m.started != nil {
		m.started <- where
	}
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return map[string]*tensor.Tensor{"y": in["x"]}, nil
}

func (m *whereModel) runs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.where...)
}

// TestRunHere: a request that finds an instance idle and would be sent at
// once runs on its caller's goroutine; one that must wait (its instance
// busy, or the batcher holding it for a delay) is run by an instance
// goroutine as before; either way one instance never runs two things at
// once, observers see every run, and SLO costs are measured.
func TestRunHere(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want []string
	}{
		{"no batching", Options{}, []string{"caller", "caller", "caller"}},
		{"batching without delay", Options{MaxBatchSize: 4, Batching: true}, []string{"caller", "caller", "caller"}},
		{"batching with a delay", Options{MaxBatchSize: 4, Batching: true, MaxQueueDelay: time.Millisecond}, []string{"instance", "instance", "instance"}},
		{"SLO batcher", Options{MaxBatchSize: 4, Batching: true, SLO: time.Second}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &whereModel{}
			obs := &observer{}
			s := New(m, c.opts, obs)
			defer s.Shutdown(context.Background())
			for i := range 3 {
				res, err := s.Infer(context.Background(), req(float32(i), 1, 2))
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Outputs["y"].Float32s()[0]; got != float32(i) {
					t.Fatalf("request %d: output %v", i, got)
				}
			}
			got := m.runs()
			if c.want != nil && strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("runs on %v, want %v", got, c.want)
			}
			obs.mu.Lock()
			if obs.runs != 3 {
				t.Errorf("the observer saw %d runs, want 3", obs.runs)
			}
			obs.mu.Unlock()
			if m.overlap {
				t.Error("two runs overlapped on the only instance")
			}
			if c.opts.SLO > 0 {
				st := s.SLOStats()
				if st.Met != 3 {
					t.Errorf("SLO stats %+v: want 3 met", st)
				}
			}
		})
	}
}

// TestRunHereBusy: while a caller runs on the only instance, a second
// request queues and is run by the instance goroutine once the first is
// done, and a warmup job waits for the instance; Shutdown waits for the
// caller's run, and Stopped is closed only after it.
func TestRunHereBusy(t *testing.T) {
	m := &whereModel{gate: make(chan struct{}), started: make(chan string, 10)}
	s := New(m, Options{}, nil)
	first := make(chan error, 1)
	go func() { _, err := s.Infer(context.Background(), req(1, 1, 2)); first <- err }()
	if w := <-m.started; w != "caller" {
		t.Fatalf("the first request ran on the %s goroutine, want the caller's", w)
	}
	second := make(chan error, 1)
	go func() { _, err := s.Infer(context.Background(), req(2, 1, 2)); second <- err }()
	warm := make(chan error, 1)
	go func() { warm <- s.Warmup(context.Background(), []Sample{{Name: "w", Inputs: req(3, 1, 2).Inputs}}) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.Pending() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want 1", s.Pending())
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case w := <-m.started:
		t.Fatalf("a %s run started while the caller held the only instance", w)
	case <-time.After(50 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown with an ended context while requests run: no error")
	}
	select {
	case <-s.Stopped():
		t.Fatal("Stopped closed while a caller's run goes on")
	default:
	}
	close(m.gate)
	if err := <-first; err != nil {
		t.Errorf("first request: %v", err)
	}
	<-s.Stopped()
	// the queued request was failed by the Shutdown (its context had
	// ended) or ran; the warmup ran after the caller's run or was refused
	<-second
	<-warm
	if m.overlap {
		t.Error("two runs overlapped on the only instance")
	}
}

// flatEngine costs 10ms a batch, whatever its size, on a fake clock, and
// records each run's batch size and goroutine (a caller's, in runHere, or
// an instance's).
type flatEngine struct {
	clock *fakeClock
	mu    sync.Mutex
	runs  []string
}

func (e *flatEngine) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	buf := make([]byte, 16<<10)
	where := "instance"
	if strings.Contains(string(buf[:runtime.Stack(buf, false)]), "(*Scheduler).runHere") {
		where = "caller"
	}
	e.mu.Lock()
	e.runs = append(e.runs, fmt.Sprintf("%d on %s", in["x"].Shape[0], where))
	e.mu.Unlock()
	e.clock.Advance(10 * ms)
	return map[string]*tensor.Tensor{"y": in["x"]}, nil
}

// TestSLORunHereBatch: with the SLO batcher, a request that finds the
// instance idle runs at once on its caller's goroutine when the next
// request is not due soon; when it is (arrivals every 3ms against a flat
// 10ms a batch: waiting pays), the first requests wait, and the arrival
// that completes the batch worth sending (the third: 4 x 2.7ms > 10ms)
// runs the whole batch on its own goroutine, no instance goroutine
// involved.
func TestSLORunHereBatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		gap  time.Duration // the mean gap between arrivals the batcher has seen
		want []string
	}{
		{"next not due soon: each at once", 100 * ms, []string{"1 on caller", "1 on caller", "1 on caller"}},
		{"next due soon: the third arrival runs the three", 3 * ms, []string{"3 on caller"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			eng := &flatEngine{clock: clock}
			s := New(eng, Options{Instances: 1, MaxBatchSize: 8, Batching: true, SLO: 50 * ms, Now: clock.Now}, nil)
			defer s.Shutdown(context.Background())
			// what the batcher would have learnt: a batch costs 10ms, and
			// requests come tc.gap apart
			s.mu.Lock()
			for b := 1; b <= 8; b++ {
				s.slo.cost.observe(b, 10*ms)
			}
			s.slo.gap, s.slo.last = tc.gap.Seconds(), clock.Now()
			s.mu.Unlock()
			results := make(chan *Result, 3)
			var wg sync.WaitGroup
			for i := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := s.Infer(context.Background(), req(float32(i), 1, 2))
					if err != nil {
						t.Error(err)
						return
					}
					results <- res
				}()
				// each request either ran or is queued before the next comes
				deadline := time.Now().Add(5 * time.Second)
				for {
					eng.mu.Lock()
					ran := len(eng.runs)
					eng.mu.Unlock()
					if s.Pending() == i+1 && ran == 0 || len(results) == i+1 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("request %d: neither queued nor answered (%d pending, %d runs)", i, s.Pending(), ran)
					}
					time.Sleep(100 * time.Microsecond)
				}
				if tc.gap > 10*ms {
					clock.Advance(tc.gap)
				}
			}
			wg.Wait()
			eng.mu.Lock()
			got := strings.Join(eng.runs, ", ")
			eng.mu.Unlock()
			if got != strings.Join(tc.want, ", ") {
				t.Fatalf("runs %s, want %s", got, strings.Join(tc.want, ", "))
			}
		})
	}
}
