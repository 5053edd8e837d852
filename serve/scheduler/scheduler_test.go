package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// fakeModel doubles its float32 input "x" into "y", records the batch shapes
// it saw, and blocks on gate (when not nil) before answering.
type fakeModel struct {
	delay   time.Duration
	gate    chan struct{}
	started chan struct{}
	mu      sync.Mutex
	shapes  [][]int
	order   []float32
}

func (f *fakeModel) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	x := in["x"]
	f.mu.Lock()
	f.shapes = append(f.shapes, append([]int{}, x.Shape...))
	f.order = append(f.order, x.Float32s()[0])
	f.mu.Unlock()
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	time.Sleep(f.delay)
	y := tensor.New(tensor.Float32, x.Shape...)
	for i, v := range x.Float32s() {
		y.Float32s()[i] = 2 * v
	}
	return map[string]*tensor.Tensor{"y": y}, nil
}

func req(v float32, shape ...int) *Request {
	t := tensor.New(tensor.Float32, shape...)
	for i := range t.Float32s() {
		t.Float32s()[i] = v
	}
	return &Request{Inputs: map[string]*tensor.Tensor{"x": t}}
}

func checkDoubled(t *testing.T, res *Result, v float32) {
	t.Helper()
	for _, y := range res.Outputs["y"].Float32s() {
		if y != 2*v {
			t.Fatalf("output %v, want %v", y, 2*v)
		}
	}
}

// blocked starts a scheduler on a gated fake model and occupies its only
// instance with one request; release lets everything run.
func blocked(t *testing.T, opts Options) (s *Scheduler, m *fakeModel, release func()) {
	t.Helper()
	m = &fakeModel{gate: make(chan struct{}), started: make(chan struct{}, 100)}
	s = New(m, opts, nil)
	// a full batch, so that a batcher sends it at once
	go s.Infer(context.Background(), req(-1, max(opts.MaxBatchSize, 1), 2))
	<-m.started
	var once sync.Once
	release = func() { once.Do(func() { close(m.gate) }) }
	t.Cleanup(func() { release(); s.Shutdown(context.Background()) })
	return s, m, release
}

func TestBatchingUnderLoad(t *testing.T) {
	m := &fakeModel{delay: 20 * time.Millisecond}
	s := New(m, Options{Instances: 1, MaxBatchSize: 8, Batching: true, MaxQueueDelay: 50 * time.Millisecond}, nil)
	defer s.Shutdown(context.Background())
	var wg sync.WaitGroup
	sizes := make([]int, 24)
	for i := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := float32(i)
			res, err := s.Infer(context.Background(), req(v, 1, 2))
			if err != nil {
				t.Error(err)
				return
			}
			checkDoubled(t, res, v)
			if got := res.Outputs["y"].Shape; got[0] != 1 || got[1] != 2 {
				t.Errorf("output shape %v", got)
			}
			sizes[i] = res.BatchSize
		}()
	}
	wg.Wait()
	biggest := 0
	for _, n := range sizes {
		biggest = max(biggest, n)
	}
	if biggest < 4 {
		t.Errorf("largest batch %d under 24 concurrent requests, want >= 4 (sizes %v)", biggest, sizes)
	}
	for _, sh := range m.shapes {
		if sh[0] > 8 {
			t.Errorf("batch of %d above max_batch_size 8", sh[0])
		}
	}
}

func TestPreferredBatchSizeSendsAtOnce(t *testing.T) {
	s, m, release := blocked(t, Options{MaxBatchSize: 8, Batching: true, PreferredBatchSizes: []int{2}, MaxQueueDelay: time.Hour})
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); s.Infer(context.Background(), req(float32(i), 1, 2)) }()
	}
	for s.Pending() < 2 {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait() // with a one-hour delay this returns only because 2 is preferred
	if got := m.shapes[len(m.shapes)-1][0]; got != 2 {
		t.Errorf("batch %d, want 2", got)
	}
}

func TestDifferentShapesNotBatched(t *testing.T) {
	s, m, release := blocked(t, Options{MaxBatchSize: 8, Batching: true, MaxQueueDelay: 10 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Infer(context.Background(), req(1, 1, 2+i%2))
			if err != nil {
				t.Error(err)
				return
			}
			if got := res.Outputs["y"].Shape[1]; got != 2+i%2 {
				t.Errorf("output dim %d, want %d", got, 2+i%2)
			}
		}()
	}
	for s.Pending() < 6 {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	total := 0
	for _, sh := range m.shapes[1:] {
		total += sh[0]
	}
	if total != 6 || len(m.shapes) != 3 {
		t.Errorf("batches %v, want one of each shape with 3 requests each", m.shapes[1:])
	}
}

func TestQueueTimeoutWhileBusy(t *testing.T) {
	tests := []struct {
		name     string
		policy   QueuePolicy
		override time.Duration
	}{
		{"default timeout", QueuePolicy{DefaultTimeout: 20 * time.Millisecond}, 0},
		{"override", QueuePolicy{DefaultTimeout: time.Hour, AllowOverride: true}, 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := blocked(t, Options{DefaultPolicy: tt.policy})
			r := req(1, 1, 2)
			r.Timeout = tt.override
			start := time.Now()
			_, err := s.Infer(context.Background(), r)
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("err = %v, want ErrTimeout", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("timeout took %v", d)
			}
			if s.Pending() != 0 {
				t.Errorf("Pending = %d after timeout", s.Pending())
			}
		})
	}
}

func TestDelayPolicy(t *testing.T) {
	s, m, release := blocked(t, Options{PriorityLevels: 2, Policies: map[int]QueuePolicy{
		2: {Action: Delay, DefaultTimeout: 5 * time.Millisecond, AllowOverride: true},
	}})
	var wg sync.WaitGroup
	infer := func(v float32, prio int) {
		defer wg.Done()
		r := req(v, 1, 2)
		r.Priority = prio
		if v == 1 {
			// the second request must not expire too on a loaded machine
			r.Timeout = time.Hour
		}
		res, err := s.Infer(context.Background(), r)
		if err != nil {
			t.Error(err)
			return
		}
		checkDoubled(t, res, v)
	}
	wg.Add(1)
	go infer(2, 2)
	for s.Pending() < 1 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // level 2's first request is now delayed
	wg.Add(1)
	go infer(1, 2)
	for s.Pending() < 2 {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	if got := m.order[1:]; got[0] != 1 || got[1] != 2 {
		t.Errorf("run order %v, want the delayed request last", got)
	}
}

func TestPriority(t *testing.T) {
	s, m, release := blocked(t, Options{PriorityLevels: 3})
	var wg sync.WaitGroup
	for _, p := range []int{3, 0, 1, 2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := req(float32(p), 1, 2)
			r.Priority = p
			if _, err := s.Infer(context.Background(), r); err != nil {
				t.Error(err)
			}
		}()
		for s.Pending() == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for s.Pending() < 4 {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	want := []float32{1, 2, 3, 0} // priority 0 means the default, the lowest level 3, queued after 3
	for i, v := range m.order[1:] {
		if v != want[i] {
			t.Fatalf("order %v, want %v", m.order[1:], want)
		}
	}
}

func TestCancelLeavesQueue(t *testing.T) {
	s, m, release := blocked(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := s.Infer(ctx, req(7, 1, 2)); errc <- err }()
	for s.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if s.Pending() != 0 {
		t.Fatalf("Pending = %d after cancel", s.Pending())
	}
	release()
	if _, err := s.Infer(context.Background(), req(3, 1, 2)); err != nil {
		t.Fatal(err)
	}
	for _, v := range m.order {
		if v == 7 {
			t.Error("the cancelled request ran")
		}
	}
}

func TestQueueFull(t *testing.T) {
	s, _, release := blocked(t, Options{DefaultPolicy: QueuePolicy{MaxQueueSize: 1}})
	done := make(chan error)
	go func() { _, err := s.Infer(context.Background(), req(1, 1, 2)); done <- err }()
	for s.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Infer(context.Background(), req(2, 1, 2)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err = %v, want ErrQueueFull", err)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBadRequests(t *testing.T) {
	s := New(&fakeModel{}, Options{MaxBatchSize: 4, Batching: true, PriorityLevels: 2}, nil)
	defer s.Shutdown(context.Background())
	two := req(1, 2, 2)
	two.Inputs["z"] = tensor.New(tensor.Float32, 3, 2)
	prio := req(1, 1, 2)
	prio.Priority = 3
	neg := req(1, 1, 2)
	neg.Timeout = -1
	tests := []struct {
		name string
		r    *Request
	}{
		{"nil", nil},
		{"no inputs", &Request{}},
		{"batch too big", req(1, 5, 2)},
		{"scalar", req(1)},
		{"batch sizes disagree", two},
		{"priority", prio},
		{"timeout", neg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Infer(context.Background(), tt.r); !errors.Is(err, ErrInput) {
				t.Errorf("err = %v, want ErrInput", err)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	s, _, release := blocked(t, Options{})
	done := make(chan error)
	go func() { _, err := s.Infer(context.Background(), req(1, 1, 2)); done <- err }()
	for s.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	shut := make(chan error)
	go func() { shut <- s.Shutdown(context.Background()) }()
	time.Sleep(5 * time.Millisecond)
	if _, err := s.Infer(context.Background(), req(1, 1, 2)); !errors.Is(err, ErrClosed) {
		t.Errorf("after Shutdown: err = %v, want ErrClosed", err)
	}
	release()
	if err := <-done; err != nil {
		t.Errorf("queued request lost in shutdown: %v", err)
	}
	if err := <-shut; err != nil {
		t.Error(err)
	}

	s2, _, _ := blocked(t, Options{})
	go s2.Infer(context.Background(), req(1, 1, 2))
	for s2.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s2.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown past its deadline: err = %v", err)
	}
}

type observer struct {
	mu        sync.Mutex
	runs      int
	switches  int
	instances map[int]int
}

func (o *observer) Executed(e Execution) {
	o.mu.Lock()
	o.runs++
	if e.Switched {
		o.switches++
	}
	if o.instances == nil {
		o.instances = map[int]int{}
	}
	o.instances[e.Instance]++
	o.mu.Unlock()
}

func TestRealModelBatched(t *testing.T) {
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	obs := &observer{}
	s := New(m, Options{Instances: 2, MaxBatchSize: 8, Batching: true, MaxQueueDelay: 20 * time.Millisecond}, obs)
	defer s.Shutdown(context.Background())
	img := examples.TinyCNNInput(4)
	want, err := m.Run(context.Background(), map[string]*tensor.Tensor{"image": img})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			one := tensor.New(tensor.Float32, 1, 3, 32, 32)
			copy(one.Data, img.Data[i*len(one.Data):])
			res, err := s.Infer(context.Background(), &Request{Inputs: map[string]*tensor.Tensor{"image": one}})
			if err != nil {
				t.Error(err)
				return
			}
			got := res.Outputs["probabilities"].Float32s()
			exp := want["probabilities"].Float32s()[i*10 : i*10+10]
			for j := range got {
				if d := got[j] - exp[j]; d > 1e-5 || d < -1e-5 {
					t.Errorf("image %d: output %d = %v, want %v", i, j, got[j], exp[j])
				}
			}
		}()
	}
	wg.Wait()
	if obs.runs == 0 || obs.runs > 4 {
		t.Errorf("observer saw %d runs", obs.runs)
	}
}

func TestCancelStopsLoneRun(t *testing.T) {
	m := &fakeModel{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	s := New(m, Options{}, nil)
	defer func() { close(m.gate); s.Shutdown(context.Background()) }()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := s.Infer(ctx, req(1, 1, 2)); errc <- err }()
	<-m.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	go s.Infer(context.Background(), req(2, 1, 2))
	select {
	case <-m.started: // the instance was freed
	case <-time.After(5 * time.Second):
		t.Fatal("the cancelled run kept the only instance")
	}
}

// concurrentModel counts its runs and how many ran at once; a run of an
// input whose first value is negative fails.
type concurrentModel struct {
	mu        sync.Mutex
	runs, now int
	peak      int
	barrier   int // runs wait (up to 5 s) until this many ran at once
}

func (m *concurrentModel) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	m.mu.Lock()
	m.runs++
	m.now++
	m.peak = max(m.peak, m.now)
	v := in["x"].Float32s()[0]
	deadline := time.Now().Add(5 * time.Second)
	for m.barrier > 0 && m.peak < m.barrier && time.Now().Before(deadline) {
		m.mu.Unlock()
		time.Sleep(time.Millisecond)
		m.mu.Lock()
	}
	m.now--
	m.mu.Unlock()
	if v < 0 {
		return nil, errors.New("negative input")
	}
	return map[string]*tensor.Tensor{"y": in["x"]}, nil
}

func TestWarmup(t *testing.T) {
	tests := []struct {
		name      string
		instances int
		samples   []Sample
		runs      int
		err       string
	}{
		{"none", 2, nil, 0, ""},
		{"every instance", 3, []Sample{{Name: "a", Inputs: req(1, 1, 2).Inputs, Count: 2}, {Name: "b", Inputs: req(2, 1, 2).Inputs}}, 9, ""},
		{"failure names the sample", 2, []Sample{{Name: "ok", Inputs: req(1, 1, 2).Inputs}, {Name: "bad", Inputs: req(-1, 1, 2).Inputs, Count: 3}}, 4, `warmup sample "bad"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &concurrentModel{barrier: tt.instances}
			obs := &observer{}
			s := New(m, Options{Instances: tt.instances}, obs)
			defer s.Shutdown(context.Background())
			err := s.Warmup(context.Background(), tt.samples)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
			if m.runs != tt.runs {
				t.Errorf("%d warmup runs, want %d", m.runs, tt.runs)
			}
			if tt.runs > 0 && m.peak != tt.instances {
				t.Errorf("at most %d runs at once, want one per instance (%d)", m.peak, tt.instances)
			}
			if obs.runs != 0 {
				t.Errorf("the observer saw %d warmup runs", obs.runs)
			}
			m.mu.Lock()
			m.barrier = 0
			m.mu.Unlock()
			// the scheduler serves after its warmup
			if _, err := s.Infer(context.Background(), req(3, 1, 2)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestWarmupAfterShutdown(t *testing.T) {
	m := &concurrentModel{}
	s := New(m, Options{Instances: 2}, nil)
	s.Shutdown(context.Background())
	if err := s.Warmup(context.Background(), []Sample{{Inputs: req(1, 1, 2).Inputs}}); !errors.Is(err, ErrClosed) {
		t.Errorf("err = %v, want ErrClosed", err)
	}
}

// TestContextSwitches: with one instance no batch is a switch; with two,
// a batch that runs while the other instance is busy is.
func TestContextSwitches(t *testing.T) {
	m := &fakeModel{}
	obs := &observer{}
	s := New(m, Options{Instances: 1}, obs)
	for range 5 {
		if _, err := s.Infer(context.Background(), req(1, 1, 2)); err != nil {
			t.Fatal(err)
		}
	}
	s.Shutdown(context.Background())
	if s.Switches() != 0 || obs.switches != 0 || obs.runs != 5 {
		t.Errorf("one instance: %d switches (observer %d of %d runs), want 0", s.Switches(), obs.switches, obs.runs)
	}

	g := &fakeModel{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	obs = &observer{}
	s = New(g, Options{Instances: 2}, obs)
	done := make(chan error, 2)
	go func() { _, err := s.Infer(context.Background(), req(1, 1, 2)); done <- err }()
	<-g.started // one instance is busy: the next request runs on the other
	go func() { _, err := s.Infer(context.Background(), req(2, 1, 2)); done <- err }()
	<-g.started
	close(g.gate)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	s.Shutdown(context.Background())
	if s.Switches() != 1 || obs.switches != 1 || len(obs.instances) != 2 {
		t.Errorf("two instances: %d switches (observer %d, instances %v), want 1", s.Switches(), obs.switches, obs.instances)
	}
}

// TestPhaseTimes: a batch of two requests reports the time to concatenate
// the inputs, to run, and to split the outputs.
func TestPhaseTimes(t *testing.T) {
	m := &fakeModel{delay: 2 * time.Millisecond}
	s := New(m, Options{MaxBatchSize: 2, Batching: true, MaxQueueDelay: 5 * time.Second}, nil)
	defer s.Shutdown(context.Background())
	res := make(chan *Result, 2)
	for i := range 2 {
		go func() {
			r, err := s.Infer(context.Background(), req(float32(i), 1, 64))
			if err != nil {
				t.Error(err)
			}
			res <- r
		}()
	}
	for range 2 {
		r := <-res
		if r == nil {
			t.FailNow()
		}
		if r.BatchSize != 2 || r.Input <= 0 || r.Output <= 0 || r.Compute < m.delay {
			t.Errorf("batch %d: input %v, compute %v, output %v", r.BatchSize, r.Input, r.Compute, r.Output)
		}
	}
}

// instanceModel makes one runner per instance; a runner used by two
// goroutines at once, or by another instance, is an error.
type instanceModel struct {
	mu        sync.Mutex
	made      int
	runs      map[int]int // runs per instance runner
	conflicts int
}

type instanceRunner struct {
	m    *instanceModel
	id   int
	busy sync.Mutex
}

func (m *instanceModel) NewInstance() Runner {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.made++
	return &instanceRunner{m: m, id: m.made - 1}
}

func (m *instanceModel) Run(context.Context, map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return nil, errors.New("the shared runner ran: every instance has its own")
}

func (r *instanceRunner) Run(_ context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	if !r.busy.TryLock() {
		r.m.mu.Lock()
		r.m.conflicts++
		r.m.mu.Unlock()
		return nil, errors.New("instance runner used concurrently")
	}
	defer r.busy.Unlock()
	time.Sleep(time.Millisecond)
	r.m.mu.Lock()
	r.m.runs[r.id]++
	r.m.mu.Unlock()
	return map[string]*tensor.Tensor{"y": in["x"]}, nil
}

// TestInstancer: an Instancer's runners, one per instance, each serve one
// goroutine at a time, warmups run once on each, and requests spread over
// them.
func TestInstancer(t *testing.T) {
	m := &instanceModel{runs: map[int]int{}}
	obs := &observer{}
	s := New(m, Options{Instances: 3}, obs)
	if err := s.Warmup(context.Background(), []Sample{{Name: "w", Inputs: req(1, 1, 2).Inputs}}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	if m.made != 3 || len(m.runs) != 3 || m.runs[0] != 1 || m.runs[1] != 1 || m.runs[2] != 1 {
		t.Errorf("%d runners made, warmup runs %v; want 3, one each", m.made, m.runs)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Infer(context.Background(), req(float32(i), 1, 2)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s.Shutdown(context.Background())
	m.mu.Lock()
	defer m.mu.Unlock()
	total := 0
	for id, n := range m.runs {
		total += n
		if obs.instances[id] != n-1 {
			t.Errorf("instance %d: %d runs of its runner, the observer saw %d on it", id, n-1, obs.instances[id])
		}
	}
	if total != 33 || m.conflicts != 0 {
		t.Errorf("%d runs (want 33), %d concurrent uses of one runner", total, m.conflicts)
	}
}
