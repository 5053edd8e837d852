package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/tensor"
)

const ms = time.Millisecond

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// costEngine is a fake engine of known cost: a batch of b takes
// fixed + b*perItem on the fake clock. It doubles "x" into "y", records the
// batch sizes it ran, and blocks on gate (when not nil) before running.
type costEngine struct {
	clock          *fakeClock
	fixed, perItem time.Duration
	gate           chan struct{}
	started        chan struct{}
	mu             sync.Mutex
	sizes          []int
}

func (e *costEngine) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	x := in["x"]
	e.mu.Lock()
	gate, started := e.gate, e.started
	e.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	b := x.Shape[0]
	e.mu.Lock()
	e.sizes = append(e.sizes, b)
	e.mu.Unlock()
	e.clock.Advance(e.fixed + time.Duration(b)*e.perItem)
	y := tensor.New(tensor.Float32, x.Shape...)
	for i, v := range x.Float32s() {
		y.Float32s()[i] = 2 * v
	}
	return map[string]*tensor.Tensor{"y": y}, nil
}

func (e *costEngine) ran() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int(nil), e.sizes...)
}

func TestCostModelEstimate(t *testing.T) {
	type obs struct {
		size int
		d    time.Duration
	}
	for _, tc := range []struct {
		name     string
		obs      []obs
		size     int
		mean     time.Duration
		p99      time.Duration
		measured bool
	}{
		{name: "nothing measured", size: 4},
		{name: "measured size", obs: []obs{{4, 8 * ms}}, size: 4, mean: 8 * ms, p99: 8 * ms, measured: true},
		{name: "above the largest: proportional", obs: []obs{{2, 4 * ms}}, size: 8, mean: 16 * ms, p99: 16 * ms, measured: true},
		{name: "below the smallest: the smallest's", obs: []obs{{4, 8 * ms}}, size: 1, mean: 8 * ms, p99: 8 * ms, measured: true},
		{name: "between: interpolated", obs: []obs{{2, 4 * ms}, {6, 8 * ms}}, size: 3, mean: 5 * ms, p99: 5 * ms, measured: true},
		// mean 10 -> 10 + (20-10)/8 = 11.25; dev 0 -> (|20-10| - 0)/4 = 2.5; p99 = 11.25 + 3*2.5
		{name: "noisy: mean and deviation", obs: []obs{{1, 10 * ms}, {1, 20 * ms}}, size: 1, mean: 11250 * time.Microsecond, p99: 18750 * time.Microsecond, measured: true},
		{name: "beyond max batch", obs: []obs{{8, 8 * ms}}, size: 16, mean: 16 * ms, p99: 16 * ms, measured: true},
		{name: "bad sizes ignored", obs: []obs{{0, 8 * ms}, {9, 8 * ms}}, size: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCostModel(8)
			for _, o := range tc.obs {
				c.observe(o.size, o.d)
			}
			mean, p99, ok := c.estimate(tc.size)
			if ok != tc.measured {
				t.Fatalf("ok %v, want %v", ok, tc.measured)
			}
			got := func(x float64) time.Duration { return time.Duration(x*1e9 + 0.5) }
			if got(mean) != tc.mean || got(p99) != tc.p99 {
				t.Fatalf("estimate(%d) = mean %v p99 %v, want %v %v", tc.size, got(mean), got(p99), tc.mean, tc.p99)
			}
		})
	}
}

// TestSLODecide checks the SLO batcher's decisions on a known cost model:
// batch b costs 1ms + b*0.5ms, the objective is 10ms, MaxBatchSize 32.
func TestSLODecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		// measure fills the cost model (false: nothing measured yet)
		measure   bool
		instances int
		// gap between arrivals (0: one arrival only), age of the oldest
		// request, and the batch at hand
		gap, age time.Duration
		n        int
		send     bool
		reason   string
		wait     time.Duration
	}{
		{name: "nothing measured: send at once", n: 1, send: true, reason: DecisionLearning},
		{name: "max batch: send", measure: true, n: 32, gap: 100 * time.Microsecond, send: true, reason: DecisionFull},
		// one arrival only: no rate, so a batch of one keeps up
		{name: "idle, no rate known: send", measure: true, n: 1, send: true, reason: DecisionKeepsUp},
		// 1 request / 10ms against 1 / 1.5ms at batch 1: waiting cannot fill more than it costs
		{name: "light load: send", measure: true, n: 1, gap: 10 * ms, send: true, reason: DecisionKeepsUp},
		// 1 request / 0.2ms needs batches m with m/(1+0.5m)ms >= 2.5/ms: none;
		// the oldest is 1ms old, a batch of 4 costs 3ms: 6ms to the deadline,
		// but decide again after two arrivals' time (0.4ms)
		{name: "heavy load: wait to fill", measure: true, n: 3, gap: 200 * time.Microsecond, age: 1 * ms, send: false, reason: DecisionWait, wait: 400 * time.Microsecond},
		// the oldest 6.8ms old: a batch of 4 may start until 10-3 = 7ms: wait 0.2ms
		{name: "heavy load, deadline near: wait less", measure: true, n: 3, gap: 200 * time.Microsecond, age: 6800 * time.Microsecond, send: false, reason: DecisionWait, wait: 200 * time.Microsecond},
		{name: "heavy load, deadline reached: send", measure: true, n: 3, gap: 200 * time.Microsecond, age: 7 * ms, send: true, reason: DecisionDeadline},
		// 1 / 0.5ms, of which a batch must keep up with half (1/ms): batch
		// 1 runs 1 per 1.5ms, too slow on one instance, but on four it does
		{name: "four instances keep up with smaller batches", measure: true, instances: 4, n: 1, gap: 500 * time.Microsecond, age: 1 * ms, send: true, reason: DecisionKeepsUp},
		// on one, batch 2 is needed (2 per 2ms); wait at most two gaps
		{name: "one instance waits for a batch of 2", instances: 1, measure: true, n: 1, gap: 500 * time.Microsecond, age: 1 * ms, send: false, reason: DecisionWait, wait: 1 * ms},
		{name: "one instance, a batch of 2 queued: send", instances: 1, measure: true, n: 2, gap: 500 * time.Microsecond, age: 1 * ms, send: true, reason: DecisionKeepsUp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSLOPolicy(10*ms, 32, max(tc.instances, 1))
			if tc.measure {
				for b := 1; b <= 32; b++ {
					p.cost.observe(b, ms+time.Duration(b)*ms/2)
				}
			}
			// arrivals up to now, tc.gap apart
			now := t0.Add(time.Second)
			p.arrived(now.Add(-tc.gap), 1)
			if tc.gap > 0 {
				p.arrived(now, 1)
			}
			send, wait, reason := p.decide(now, now.Add(-tc.age), tc.n, 32)
			if send != tc.send || reason != tc.reason || (!send && absDur(wait-tc.wait) > time.Microsecond) {
				t.Fatalf("decide = send %v wait %v reason %q, want %v %v %q", send, wait, reason, tc.send, tc.wait, tc.reason)
			}
		})
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// TestSLOBatcherLearns runs the SLO batcher on an engine of known cost on
// a fake clock: it learns the cost of a batch of one from light traffic
// (each request sent at once, no delay); under a burst it sends what is
// queued when waiting for more would break the oldest request's deadline,
// learns that size's cost, and under a larger burst sends full batches;
// it counts the requests within the objective.
func TestSLOBatcherLearns(t *testing.T) {
	clock := newFakeClock()
	// a batch of b costs 1ms + b*0.5ms
	eng := &costEngine{clock: clock, fixed: ms, perItem: ms / 2}
	s := New(eng, Options{Instances: 1, MaxBatchSize: 32, Batching: true, SLO: 20 * ms, Now: clock.Now,
		MaxQueueDelay: time.Hour}, nil)
	defer s.Shutdown(context.Background())
	ctx := context.Background()

	// light traffic: one request a second, each sent alone at once
	for i := range 3 {
		res, err := s.Infer(ctx, req(float32(i), 1, 2))
		if err != nil {
			t.Fatal(err)
		}
		checkDoubled(t, res, float32(i))
		if !res.SLOMet || res.BatchSize != 1 {
			t.Fatalf("light request %d: batch %d, SLO met %v; want 1, true", i, res.BatchSize, res.SLOMet)
		}
		clock.Advance(time.Second)
	}
	if mean, p99, ok := s.Cost(1); !ok || mean != 1500*time.Microsecond || p99 != mean {
		t.Fatalf("cost of a batch of 1: %v %v %v, want 1.5ms", mean, p99, ok)
	}
	if d := s.Decisions(); d[DecisionLearning] != 1 || d[DecisionKeepsUp] != 2 {
		t.Fatalf("decisions %v, want 1 learning, 2 keeps_up", d)
	}

	// burst sends one request that holds the instance while n queue at one
	// instant, then lets them all run
	var met int
	burst := func(n int) {
		t.Helper()
		eng.mu.Lock()
		eng.gate, eng.started = make(chan struct{}), make(chan struct{}, 1)
		eng.mu.Unlock()
		var wg sync.WaitGroup
		results := make(chan *Result, n+1)
		infer := func(v float32) {
			defer wg.Done()
			res, err := s.Infer(ctx, req(v, 1, 2))
			if err != nil {
				t.Error(err)
				return
			}
			checkDoubled(t, res, v)
			results <- res
		}
		wg.Add(1)
		go infer(100)
		<-eng.started
		for i := range n {
			wg.Add(1)
			go infer(float32(i))
		}
		for s.Pending() < n {
			time.Sleep(time.Millisecond)
		}
		eng.mu.Lock()
		gate := eng.gate
		eng.gate, eng.started = nil, nil
		eng.mu.Unlock()
		close(gate)
		wg.Wait()
		close(results)
		for r := range results {
			if r.SLOMet {
				met++
			}
		}
		clock.Advance(time.Second)
	}

	// 20 queued behind one: a batch of 21 would take 31.5ms by the cost
	// of one, past the oldest's deadline: the 20 go at once, and take 11ms
	burst(20)
	if mean, _, _ := s.Cost(20); mean != 11*ms {
		t.Fatalf("cost of a batch of 20: %v, want 11ms", mean)
	}
	// 40 queued behind one: 32 fill a batch (17ms, ending 18.5ms after
	// they came: met); the 8 left are then past waiting (a batch of 9 takes
	// 5.5ms by the estimates) and end at 23.5ms: missed
	burst(40)
	want := []int{1, 1, 1, 1, 20, 1, 32, 8}
	if got := eng.ran(); !equalInts(got, want) {
		t.Fatalf("batch sizes %v, want %v", got, want)
	}
	d := s.Decisions()
	if d[DecisionFull] != 1 || d[DecisionDeadline] != 2 || d[DecisionKeepsUp] != 4 {
		t.Fatalf("decisions %v, want one full, two deadline, four keeps_up", d)
	}
	if st := s.SLOStats(); st.Met != 3+21+33 || st.Missed != 8 || st.Target != 20*ms || met != 21+33 {
		t.Fatalf("SLO stats %+v, met in the bursts' results %d; want 57 met, 8 missed", st, met)
	}
}

// TestSLOCountsRejected: requests refused for a full queue count as missed.
func TestSLOCountsRejected(t *testing.T) {
	clock := newFakeClock()
	eng := &costEngine{clock: clock, fixed: ms, gate: make(chan struct{}), started: make(chan struct{}, 4)}
	// batches of one: each is full, sent at once
	s := New(eng, Options{Instances: 1, MaxBatchSize: 1, Batching: true, SLO: 10 * ms, Now: clock.Now,
		DefaultPolicy: QueuePolicy{MaxQueueSize: 1}}, nil)
	defer s.Shutdown(context.Background())
	done := make(chan error, 2)
	go func() { _, err := s.Infer(context.Background(), req(1, 1, 2)); done <- err }()
	<-eng.started
	go func() { _, err := s.Infer(context.Background(), req(2, 1, 2)); done <- err }()
	for s.Pending() < 1 {
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Infer(context.Background(), req(3, 1, 2)); err == nil {
		t.Fatal("a request beyond max_queue_size was queued")
	}
	close(eng.gate)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.SLOStats(); st.Met != 2 || st.Missed != 1 {
		t.Fatalf("SLO stats %+v, want 2 met, 1 missed", st)
	}
}

// TestNoSLONoStats: without an objective nothing is counted.
func TestNoSLONoStats(t *testing.T) {
	s := New(&fakeModel{}, Options{MaxBatchSize: 4, Batching: true}, nil)
	defer s.Shutdown(context.Background())
	res, err := s.Infer(context.Background(), req(1, 1, 2))
	if err != nil {
		t.Fatal(err)
	}
	if res.SLOMet || s.SLOStats() != (SLOStats{}) || s.Decisions() != nil {
		t.Fatalf("SLO figures without an SLO: %v %+v %v", res.SLOMet, s.SLOStats(), s.Decisions())
	}
	if _, _, ok := s.Cost(1); ok {
		t.Fatal("a cost estimate without an SLO")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSLOWaitEnds runs the SLO batcher on the real clock with an engine
// whose batches cost the same whatever their size (so that, under a fast
// stream of requests, waiting to fill a batch pays): a request held to
// fill a batch is sent in the end, when more come, when the arrivals stop
// (the rate estimate falls), or at its deadline, and no request is lost.
func TestSLOWaitEnds(t *testing.T) {
	m := &fakeModel{delay: 2 * ms}
	s := New(m, Options{Instances: 1, MaxBatchSize: 64, Batching: true, SLO: 200 * ms}, nil)
	defer s.Shutdown(context.Background())
	ctx := context.Background()
	if _, err := s.Infer(ctx, req(1, 1, 2)); err != nil { // learns the cost of one
		t.Fatal(err)
	}
	// a burst of concurrent requests: the rate estimate rises, and the
	// batcher waits to fill batches
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Infer(ctx, req(float32(i), 1, 2))
			if err != nil {
				t.Error(err)
				return
			}
			checkDoubled(t, res, float32(i))
		}()
	}
	wg.Wait()
	// then a lone request: sent although no batch fills
	if _, err := s.Infer(ctx, req(2, 1, 2)); err != nil {
		t.Fatal(err)
	}
	st := s.SLOStats()
	if st.Met+st.Missed != 42 {
		t.Fatalf("SLO stats %+v, want 42 requests counted", st)
	}
	d := s.Decisions()
	var sent uint64
	for _, n := range d {
		sent += n
	}
	m.mu.Lock()
	runs := len(m.shapes)
	m.mu.Unlock()
	if sent != uint64(runs) {
		t.Fatalf("decisions %v for %d runs of 42 requests: want one decision a run", d, runs)
	}
}
