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
		// a stall raised batch 4's estimate above batch 8's: capped at it
		{name: "a stalled size costs at most a larger one", obs: []obs{{4, 20 * ms}, {8, 6 * ms}}, size: 4, mean: 6 * ms, p99: 6 * ms, measured: true},
		// between 4 (20ms) and 8 (6ms) the interpolation gives 13ms: capped too
		{name: "interpolated sizes capped as well", obs: []obs{{4, 20 * ms}, {8, 6 * ms}}, size: 6, mean: 6 * ms, p99: 6 * ms, measured: true},
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
		// take is how many are sent (0: all n)
		take int
		// idle is the instances free (0: 1)
		idle int
		// flat makes every batch cost 2ms (the cost per request falls
		// with the batch) instead of 1ms + b*0.5ms
		flat bool
		// slow16 gives the batches the cost of the MLP in the real sweep
		// (mlpCurveSlow16: a batch of 16 costs 2.7ms, two of 8 1.35ms)
		slow16 bool
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
		// a backlog of 20, the oldest 4ms old: a batch of 20 takes 11ms,
		// past their deadlines; 6ms left fit a batch of 10 (6ms): 10 meet
		// the objective instead of none (the 10 left miss either way), and
		// 1 request a 10ms needs no more
		{name: "backlog: as many as fit the budget", measure: true, n: 20, gap: 10 * ms, age: 4 * ms, send: true, reason: DecisionBudget, take: 10},
		// the same backlog arriving 1 per 0.3ms (3.3/ms): no batch keeps up
		// (m/(1+0.5m) stays below 2/ms), so the whole queue goes
		{name: "backlog above capacity: all of it", measure: true, n: 20, gap: 300 * time.Microsecond, age: 4 * ms, send: true, reason: DecisionDeadline},
		// 1 per 1ms: a cut must keep up with 1/ms at 60% of its capacity,
		// m/(1+0.5m) >= 1.67/ms: m >= 10, which the budget's 10 do
		{name: "backlog, moderate rate: the budget's", measure: true, n: 20, gap: 1 * ms, age: 4 * ms, send: true, reason: DecisionBudget, take: 10},
		// 1 per 0.9ms: m/(1+0.5m) >= 1.85/ms needs m >= 25: a cut to 10
		// would let the queue grow, so all of it goes
		{name: "backlog, a cut would not keep up: all of it", measure: true, n: 20, gap: 900 * time.Microsecond, age: 4 * ms, send: true, reason: DecisionDeadline},
		// the oldest past its deadline already: nothing fits, all of it goes
		{name: "backlog past the deadline: all of it", measure: true, n: 20, gap: 10 * ms, age: 12 * ms, send: true, reason: DecisionDeadline},
		// a flat 2ms engine on four instances: batch 1 keeps up with 1 per
		// 0.4ms (4 per 2ms), but the next is due in 0.4ms < 2ms/2 - 0: wait
		// for it, at most two gaps
		{name: "flat cost: the next request is due soon, wait", flat: true, instances: 4, measure: true, n: 1, gap: 400 * time.Microsecond, send: false, reason: DecisionWait, wait: 800 * time.Microsecond},
		// 1 per 1.2ms: 2 x 1.2ms > 2ms: send
		{name: "flat cost: the next request is not due soon, send", flat: true, instances: 4, measure: true, n: 1, gap: 1200 * time.Microsecond, send: true, reason: DecisionKeepsUp},
		// the same with another instance free: the next will run there
		{name: "flat cost, next due soon, another instance free: send", flat: true, instances: 4, idle: 2, measure: true, n: 1, gap: 400 * time.Microsecond, send: true, reason: DecisionKeepsUp},
		// with 3 at hand the next must come within 2ms/4 = 0.5ms
		{name: "flat cost, 3 at hand: due in 0.4ms, wait", flat: true, instances: 4, measure: true, n: 3, gap: 400 * time.Microsecond, send: false, reason: DecisionWait, wait: 800 * time.Microsecond},
		{name: "flat cost, 3 at hand: due in 0.6ms, send", flat: true, instances: 4, measure: true, n: 3, gap: 600 * time.Microsecond, send: true, reason: DecisionKeepsUp},
		// linear cost (1ms + b*0.5ms): waiting never pays by latency (the
		// next is due in 0.4ms, under c(1)), and four instances keep up with
		// half of 2.5/ms at batch 1 (2.7/ms)
		{name: "linear cost: no wait however close the next", instances: 4, measure: true, n: 1, gap: 400 * time.Microsecond, send: true, reason: DecisionKeepsUp},
		// c(16) = 2.715ms, two batches of 8 1.35ms: send 8, then the rest
		{name: "slow 16: split into 8 and 8", slow16: true, measure: true, n: 16, gap: 1 * ms, send: true, reason: DecisionSplit, take: 8},
		// c(12) = 1.695ms by the curve, c(8)+c(4) = 1.108ms (as 6+6): the
		// larger part first
		{name: "slow 16, 12 at hand: split into 8 and 4", slow16: true, measure: true, n: 12, gap: 1 * ms, send: true, reason: DecisionSplit, take: 8},
		// c(8) = 0.675ms against c(4)+c(4) = 0.866ms: whole
		{name: "slow 16, 8 at hand: no split", slow16: true, measure: true, n: 8, gap: 1 * ms, send: true, reason: DecisionKeepsUp},
		// c(32) = 4.0ms: no two batches cost 10% less (c(24)+c(8) = 4.04ms)
		{name: "slow 16, 32 at hand: whole", slow16: true, measure: true, n: 32, gap: 100 * time.Microsecond, send: true, reason: DecisionFull},
		// 1ms + b*0.5ms: two batches cost 1ms more than one, never split (16
		// take 9ms, within the objective: no cut either)
		{name: "linear cost, 16 at hand: no split", measure: true, n: 16, gap: 10 * ms, send: true, reason: DecisionKeepsUp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSLOPolicy(10*ms, 32, max(tc.instances, 1))
			if tc.measure {
				for b := 1; b <= 32; b++ {
					c := ms + time.Duration(b)*ms/2
					if tc.flat {
						c = 2 * ms
					}
					if tc.slow16 {
						c = simEngine{curve: mlpCurveSlow16}.cost(b)
					}
					p.cost.observe(b, c)
				}
			}
			// arrivals up to now, tc.gap apart
			now := t0.Add(time.Second)
			p.arrived(now.Add(-tc.gap), 1)
			if tc.gap > 0 {
				p.arrived(now, 1)
			}
			send, take, wait, reason := p.decide(now, func(int) time.Time { return now.Add(-tc.age) }, tc.n, 32, max(tc.idle, 1))
			wantTake := tc.take
			if tc.send && wantTake == 0 {
				wantTake = tc.n
			}
			if send != tc.send || reason != tc.reason || (!send && absDur(wait-tc.wait) > time.Microsecond) || (send && take != wantTake) {
				t.Fatalf("decide = send %v take %d wait %v reason %q, want %v %d %v %q", send, take, wait, reason, tc.send, wantTake, tc.wait, tc.reason)
			}
		})
	}
}

// TestSLOSplitExplores: where the cost model says two batches cost less
// than one, the SLO batcher splits, except every splitExplore-th time,
// when it runs the whole batch so that its cost is measured again.
func TestSLOSplitExplores(t *testing.T) {
	p := newSLOPolicy(10*ms, 32, 1)
	for b := 1; b <= 32; b++ {
		p.cost.observe(b, simEngine{curve: mlpCurveSlow16}.cost(b))
	}
	var got []int
	for range 2 * splitExplore {
		got = append(got, p.split(16))
	}
	for i, b := range got {
		want := 8
		if (i+1)%splitExplore == 0 {
			want = 16
		}
		if b != want {
			t.Fatalf("split(16) calls: %v; want 8, and 16 every %dth", got, splitExplore)
		}
	}
	if b := p.split(1); b != 1 {
		t.Fatalf("split(1) = %d, want 1", b)
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
// (each request sent at once, no delay); under a burst it sends as much
// of the queue as fits the oldest request's remaining budget, then the
// rest, and learns those sizes' costs; under a larger burst, whose queue
// cannot all meet the objective, it cuts the batches so that the most
// requests do; it counts the requests within the objective.
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

	// 20 queued behind one, 1.5ms old when it ends: by the only cost
	// measured (1.5ms a request, an upper bound above it) a batch of 20
	// takes 30ms, past their deadline (18.5ms left): the batcher sends as
	// many as fit, 12 (18ms by the estimate; 7ms in fact), then the 8 left
	// (5ms), all within the objective; it learns both sizes' costs
	burst(20)
	if mean, _, _ := s.Cost(12); mean != 7*ms {
		t.Fatalf("cost of a batch of 12: %v, want 7ms (ran %v)", mean, eng.ran())
	}
	if mean, _, _ := s.Cost(20); absDur(mean-7*ms*20/12) > time.Microsecond {
		t.Fatalf("cost of a batch of 20: %v, want 11.67ms (12's in proportion)", mean)
	}
	// 40 queued behind one: a full batch of 32 takes 18.67ms by the
	// estimate, past the deadline, 31 do not (18.08ms; 16.5ms in fact,
	// ending 18ms after they came: met); the 9 left have 2ms left: a batch
	// of 2 fits (2ms by the estimate, interpolated between 1 and 8), and
	// the 7 left after it miss (end 24.5ms after they came)
	burst(40)
	want := []int{1, 1, 1, 1, 12, 8, 1, 31, 2, 7}
	if got := eng.ran(); !equalInts(got, want) {
		t.Fatalf("batch sizes %v, want %v", got, want)
	}
	d := s.Decisions()
	if d[DecisionLearning] != 1 || d[DecisionBudget] != 3 || d[DecisionDeadline] != 1 || d[DecisionKeepsUp] != 5 {
		t.Fatalf("decisions %v, want one learning, three budget, one deadline, five keeps_up", d)
	}
	if st := s.SLOStats(); st.Met != 3+21+34 || st.Missed != 7 || st.Target != 20*ms || met != 21+34 {
		t.Fatalf("SLO stats %+v, met in the bursts' results %d; want 58 met, 7 missed", st, met)
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

// TestSLOFill checks the saturation rule (sloPolicy.fill): a server whose
// batches cost 2ms + b*0.1ms (a CPU engine sharing its cores with the
// request path, as kiln serve's MLP measured in the server: its cost per
// request falls with the batch), MaxBatchSize 32, one instance: batches of
// 32 serve 6.15 requests/ms, of 22 5.24/ms.
func TestSLOFill(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		// arrivals, gap apart, ending now; the latest batch ended freed ago
		arrivals int
		gap      time.Duration
		freed    time.Duration
		n        int
		// linear: batches cost 0.05ms + b*0.12ms (tinycnn's engine: batching
		// saves little) instead
		linear bool
		fill   int
		wait   time.Duration
	}{
		// 5.7/ms >= 0.9 x 6.15/ms, and 22 serve 15% less than 32: wait for
		// the 10 missing, 1.5 x 10 / 5.7/ms = 2.63ms after the batch ended
		{name: "saturated: wait to fill 32", arrivals: 600, gap: 175438 * time.Nanosecond, freed: 500 * time.Microsecond, n: 22, fill: 32, wait: 2132 * time.Microsecond},
		{name: "saturated, the wait is up: send", arrivals: 600, gap: 175438 * time.Nanosecond, freed: 3 * ms, n: 22, fill: 32},
		{name: "4/ms, below saturation: no wait", arrivals: 600, gap: 250 * time.Microsecond, freed: 500 * time.Microsecond, n: 22, fill: 22},
		{name: "too few arrivals to know the rate: no wait", arrivals: 100, gap: 175438 * time.Nanosecond, freed: 500 * time.Microsecond, n: 22, fill: 22},
		// 27 serve 5.74/ms, within 10% of 32's
		{name: "the batch at hand nearly as good: no wait", arrivals: 600, gap: 175438 * time.Nanosecond, freed: 500 * time.Microsecond, n: 27, fill: 27},
		// 20 serve 5/ms: 1.5 x 12 / 5.6/ms = 3.21ms after the batch ended
		{name: "saturated, 20 at hand", arrivals: 600, gap: 178571 * time.Nanosecond, freed: 500 * time.Microsecond, n: 20, fill: 32, wait: 2714 * time.Microsecond},
		{name: "linear cost: never", linear: true, arrivals: 600, gap: 125 * time.Microsecond, freed: 200 * time.Microsecond, n: 5, fill: 5},
		{name: "max batch at hand", arrivals: 600, gap: 175438 * time.Nanosecond, freed: 500 * time.Microsecond, n: 32, fill: 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSLOPolicy(10*ms, 32, 1)
			for b := 1; b <= 32; b++ {
				c := 2*ms + time.Duration(b)*ms/10
				if tc.linear {
					c = 50*time.Microsecond + time.Duration(b)*120*time.Microsecond
				}
				p.cost.observe(b, c)
			}
			now := t0.Add(time.Minute)
			for i := tc.arrivals - 1; i >= 0; i-- {
				p.arrived(now.Add(-time.Duration(i)*tc.gap), 1)
			}
			p.observe(now.Add(-tc.freed), 1, 2100*time.Microsecond)
			if tc.linear {
				p.observe(now.Add(-tc.freed), 1, 170*time.Microsecond)
			}
			fill, wait, _ := p.fill(now, tc.n, 32)
			if fill != tc.fill || absDur(wait-tc.wait) > 2*time.Microsecond {
				t.Fatalf("fill(%d) = %d, wait %v; want %d, %v", tc.n, fill, wait, tc.fill, tc.wait)
			}
		})
	}
}

// TestSLOSteady: the steady rule (sloPolicy.steady) on the quiet-core MLP
// curve (mlpCurveQuiet): with requests in the server's request path
// (InFlight known) at 2,000 req/s a lone request, or two, that find the
// instance idle wait for the batch of 4 whose cost per request keeps the
// instance under steadyUtilization busy; at 1,000 req/s (a lone request
// keeps it 45% busy) and without a request path (InFlight unknown) they
// are sent at once; a batch of 4 is sent; and the wait ends by the time 4
// arrive.
func TestSLOSteady(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		rate     float64
		arriving int
		n        int
		wait     bool
	}{
		{"2000/s, 1 queued: waits", 2000, 1, 1, true},
		{"2000/s, 2 queued: waits", 2000, 1, 2, true},
		{"2000/s, 4 queued: sent", 2000, 1, 4, false},
		{"1000/s, 1 queued: sent", 1000, 1, 1, false},
		{"2000/s, no request path: sent", 2000, 0, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSLOPolicy(10*ms, 32, 1)
			for _, c := range mlpCurveQuiet {
				p.cost.observe(c.size, c.d)
			}
			gap := time.Duration(float64(time.Second) / tc.rate)
			now := t0
			for range 64 {
				now = now.Add(gap)
				p.arrived(now, 1)
			}
			p.freed = now.Add(-gap)
			p.arriving = tc.arriving
			arrival := func(k int) time.Time { return now }
			send, take, wait, reason := p.decide(now, arrival, tc.n, 32, 1)
			if send == tc.wait {
				t.Fatalf("decide(%d queued) = send %v (take %d, reason %s, wait %v); want send %v", tc.n, send, take, reason, wait, !tc.wait)
			}
			if tc.wait && (wait <= 0 || wait > time.Duration(satWait*4*float64(gap))) {
				t.Errorf("wait %v; want above 0, at most the time 4 take to arrive with satWait's margin (%v)", wait, time.Duration(satWait*4*float64(gap)))
			}
		})
	}
}
