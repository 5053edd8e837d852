package scheduler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// simEngine is the cost of a batch of b in the simulation: fixed + b*per
// (or, when curve is set, the measured cost curve), times a seeded noise
// (uniform within ±noise, and with probability stallP a stall of stall
// times the cost).
type simEngine struct {
	fixed, per    time.Duration
	curve         []costPoint
	noise, stallP float64
	stall         float64
	name          string
	instances     int
	// window, when above 0, bounds the requests outstanding as a load
	// generator with that many threads does (kiln perf --max-threads): an
	// arrival that finds window requests outstanding is sent when one
	// ends. path is the time a request takes from being sent to reaching
	// the queue (the request path: network, decoding), counted in its
	// latency.
	window int
	path   time.Duration
	// pathCPU, when above 0, makes the request path share the machine
	// with the engine, as kiln serve's does on a CPU: each request needs
	// pathCPU of the whole machine's time to reach the queue (one after
	// the other, in order of sending), at full speed while no instance
	// runs a batch and at pathShare of it while one does (the engine's
	// threads hold the cores). path is then not used.
	pathCPU   time.Duration
	pathShare float64
	// warmup, when above 0, leaves the first warmup requests to end out
	// of the latencies and the throughput (and the batches that end before
	// the last of them out of the mean batch), as a load generator that
	// measures once the server runs steadily does
	warmup int
}

// costPoint is a measured engine cost: a batch of size took d.
type costPoint struct {
	size int
	d    time.Duration
}

// cost returns the engine's cost of a batch of b before noise: fixed +
// b*per, or the curve interpolated linearly between its measured sizes
// (in proportion to the size beyond the largest, the smallest's below the
// smallest).
func (e simEngine) cost(b int) time.Duration {
	if len(e.curve) == 0 {
		return e.fixed + time.Duration(b)*e.per
	}
	if b <= e.curve[0].size {
		return e.curve[0].d
	}
	for i := 1; i < len(e.curve); i++ {
		lo, hi := e.curve[i-1], e.curve[i]
		if b <= hi.size {
			f := float64(b-lo.size) / float64(hi.size-lo.size)
			return lo.d + time.Duration(f*float64(hi.d-lo.d))
		}
	}
	last := e.curve[len(e.curve)-1]
	return time.Duration(float64(last.d) * float64(b) / float64(last.size))
}

// capacity returns the requests per second the engine's instances serve
// in batches of b.
func (e simEngine) capacity(b float64) float64 {
	lo := int(b)
	c := e.cost(lo).Seconds()
	if f := b - float64(lo); f > 0 {
		c += f * (e.cost(lo+1).Seconds() - c)
	}
	return float64(max(e.instances, 1)) * b / c
}

// simResult is what one simulated run measured.
type simResult struct {
	throughput    float64 // requests per second
	p50, p99      time.Duration
	meanBatch     float64
	met, requests int
	// held counts the requests that found an instance free and the queue
	// empty, and still did not start at once (the batcher held them)
	held int
	// lat are the requests' latencies, sorted
	lat []time.Duration
	// decisions are the SLO batcher's dispatch decisions by reason
	decisions map[string]uint64
}

// within returns the share of the requests that finished within target.
func (r simResult) within(target time.Duration) float64 {
	k, _ := slices.BinarySearch(r.lat, target+1)
	return float64(k) / float64(len(r.lat))
}

// simulate runs the scheduler's own batching decisions (pick) on virtual
// time: n Poisson arrivals at rate per second, opts.Instances instances
// running batches of the simulated engine's cost. The same seed gives the
// same arrivals to every policy.
func simulate(opts Options, eng simEngine, rate float64, n int, seed uint64) simResult {
	opts.Instances = max(opts.Instances, 1)
	opts.PriorityLevels = 1
	opts.DefaultPriority = 1
	s := &Scheduler{opts: opts, queues: make([][]*item, 1), wake: make(chan struct{}), held: make([]bool, opts.Instances), last: -1}
	if opts.SLO > 0 {
		s.slo = newSLOPolicy(opts.SLO, opts.MaxBatchSize, opts.Instances)
	}
	arr := rand.New(rand.NewPCG(seed, 1))
	noise := rand.New(rand.NewPCG(seed, 2))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	arrivals := make([]time.Time, n)
	at := t0
	for i := range arrivals {
		at = at.Add(time.Duration(arr.ExpFloat64() / rate * float64(time.Second)))
		arrivals[i] = at
	}
	type running struct {
		end   time.Time
		size  int
		cost  time.Duration
		items []*item
	}
	var outstanding int
	var inPath []*item // sent, reaching the queue at enqueued
	// shared path (eng.pathCPU): requests in the path in order, the time
	// each was sent, the head's work left (seconds at full speed), and the
	// time up to which the path's progress is counted
	var pathQ []*item
	sentAt := map[*item]time.Time{}
	headLeft := 0.0
	pathT := t0
	shared := eng.pathCPU > 0
	if shared && s.slo != nil {
		// the server's requests in flight: in the path, queued, running
		s.opts.InFlight = func() int { return len(pathQ) + len(inPath) + s.queued + s.running }
	}
	busy := make([]*running, opts.Instances)
	wake := make([]time.Time, opts.Instances) // zero: no timer
	var lat []time.Duration
	idleAtArrival := map[*item]bool{}
	held := 0
	batches, items := 0, 0
	met := 0
	now := t0
	next := 0
	last := t0
	open := func() bool { return eng.window <= 0 || outstanding < eng.window }
	var warmEnd time.Time // when the warmup-th request ended
	warmItems, warmBatches := 0, 0
	done := 0
	for len(lat) < n-eng.warmup {
		if shared {
			// the path's progress from pathT to now, at the speed the
			// engine leaves it (constant between events)
			speed := 1.0
			if slices.ContainsFunc(busy, func(r *running) bool { return r != nil }) {
				speed = eng.pathShare
			}
			dt := now.Sub(pathT).Seconds()
			for len(pathQ) > 0 && dt > 0 {
				if need := headLeft / speed; need <= dt+1e-12 {
					it := pathQ[0]
					pathQ = pathQ[1:]
					dt -= need
					it.enqueued = now.Add(-time.Duration(dt * float64(time.Second)))
					inPath = append(inPath, it)
					headLeft = eng.pathCPU.Seconds()
				} else {
					headLeft -= dt * speed
					dt = 0
				}
			}
			pathT = now
		}
		// batches that ended
		for i, r := range busy {
			if r != nil && !r.end.After(now) {
				outstanding -= len(r.items)
				for _, it := range r.items {
					d := r.end.Sub(it.enqueued) + eng.path
					if shared {
						d = r.end.Sub(sentAt[it])
						delete(sentAt, it)
					}
					done++
					if done <= eng.warmup {
						if done == eng.warmup {
							warmEnd = r.end
							warmItems, warmBatches = items, batches
						}
						continue
					}
					lat = append(lat, d)
					if opts.SLO > 0 && d <= opts.SLO {
						met++
					}
				}
				if s.slo != nil {
					s.slo.observe(r.end, r.size, r.cost)
				}
				if r.end.After(last) {
					last = r.end
				}
				busy[i] = nil
				s.held[i] = false
			}
		}
		// arrivals up to now, sent while the window has room
		for next < n && !arrivals[next].After(now) && open() {
			sent := arrivals[next]
			if eng.window > 0 && now.After(sent) {
				sent = now // held by the full window
			}
			if shared {
				it := &item{key: "k", size: 1, level: 1}
				if len(pathQ) == 0 {
					headLeft = eng.pathCPU.Seconds()
				}
				pathQ = append(pathQ, it)
				sentAt[it] = sent
			} else {
				inPath = append(inPath, &item{key: "k", size: 1, level: 1, enqueued: sent.Add(eng.path)})
			}
			outstanding++
			next++
		}
		// requests reaching the queue
		for len(inPath) > 0 && !inPath[0].enqueued.After(now) {
			it := inPath[0]
			inPath = inPath[1:]
			if s.queued == 0 && slices.Contains(busy, nil) {
				idleAtArrival[it] = true
			}
			s.queues[0] = append(s.queues[0], it)
			s.queued++
			if s.slo != nil {
				s.slo.arrived(it.enqueued, 1)
			}
		}
		// free instances decide
		for i := range busy {
			if busy[i] != nil {
				continue
			}
			batch, wait := s.pick(now)
			if batch == nil {
				wake[i] = time.Time{}
				if wait > 0 {
					wake[i] = now.Add(wait)
				}
				continue
			}
			s.take(batch, i)
			s.inflight--
			size := 0
			for _, it := range batch {
				size += it.size
				if idleAtArrival[it] && now.After(it.enqueued) {
					held++
				}
				delete(idleAtArrival, it)
			}
			c := float64(eng.cost(size)) * (1 + eng.noise*(2*noise.Float64()-1))
			if noise.Float64() < eng.stallP {
				c *= eng.stall
			}
			cost := time.Duration(c)
			busy[i] = &running{end: now.Add(cost), size: size, cost: cost, items: batch}
			wake[i] = time.Time{}
			batches++
			items += size
		}
		// the next event
		var ev time.Time
		consider := func(t time.Time) {
			if !t.IsZero() && t.After(now) && (ev.IsZero() || t.Before(ev)) {
				ev = t
			}
		}
		if next < n && open() {
			consider(arrivals[next])
		}
		if len(inPath) > 0 {
			consider(inPath[0].enqueued)
		}
		if shared && len(pathQ) > 0 {
			speed := 1.0
			if slices.ContainsFunc(busy, func(r *running) bool { return r != nil }) {
				speed = eng.pathShare
			}
			consider(now.Add(time.Duration(math.Ceil(headLeft / speed * float64(time.Second)))))
		}
		for i, r := range busy {
			if r != nil {
				consider(r.end)
			}
			consider(wake[i])
		}
		if ev.IsZero() {
			// only timers due now: step a microsecond
			ev = now.Add(time.Microsecond)
		}
		now = ev
	}
	slices.Sort(lat)
	start := t0
	if eng.warmup > 0 {
		start = warmEnd
		items, batches = items-warmItems, batches-warmBatches
	}
	m := len(lat)
	res := simResult{throughput: float64(m) / last.Sub(start).Seconds(), p50: lat[m/2], p99: lat[m*99/100],
		meanBatch: float64(items) / float64(batches), met: met, requests: m, held: held, lat: lat}
	if s.slo != nil {
		res.decisions = s.slo.decisions
	}
	return res
}

// TestSLOBatcherSimulatedSweep compares the SLO batcher with fixed queue
// delays on simulated engines (the scheduler's own decisions, virtual
// time, seeded noise), at rates from light load to 90% of capacity: at the
// same offered rate (so the same throughput while neither saturates) the
// SLO batcher, never told a delay, stays within 15% of the P99 of the
// better of two fixed delays, and within 1% of its throughput. Run with -v
// for the table (bench/results/slo-batching.md).
func TestSLOBatcherSimulatedSweep(t *testing.T) {
	if raceEnabled {
		t.Skip("the simulation runs on one goroutine: nothing for the race detector, which slows it tenfold")
	}
	engines := []simEngine{
		// an accelerator: a batch costs little more than one request
		{name: "2ms + 0.1ms/request", fixed: 2 * time.Millisecond, per: 100 * time.Microsecond, noise: 0.1},
		// a CPU engine like tinycnn's: batching saves little
		{name: "0.05ms + 0.12ms/request", fixed: 50 * time.Microsecond, per: 120 * time.Microsecond, noise: 0.1},
		// the accelerator with two instances (execution contexts)
		{name: "2ms + 0.1ms/request, 2 instances", fixed: 2 * time.Millisecond, per: 100 * time.Microsecond, noise: 0.1, instances: 2},
	}
	const n = 20000
	var table strings.Builder
	fmt.Fprintln(&table, "| engine | rate req/s | batcher | infer/s | p50 ms | p99 ms | mean batch | within 10ms |")
	fmt.Fprintln(&table, "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, eng := range engines {
		capacity := eng.capacity(32)
		for _, load := range []float64{0.05, 0.2, 0.4, 0.6, 0.8, 0.9} {
			rate := load * capacity
			pols := []struct {
				name string
				opts Options
			}{
				{"fixed 500us", Options{MaxBatchSize: 32, Batching: true, MaxQueueDelay: 500 * time.Microsecond}},
				{"fixed 2ms", Options{MaxBatchSize: 32, Batching: true, MaxQueueDelay: 2 * time.Millisecond}},
				{"slo 10ms", Options{MaxBatchSize: 32, Batching: true, SLO: 10 * time.Millisecond}},
			}
			res := make([]simResult, len(pols))
			for i, p := range pols {
				p.opts.Instances = eng.instances
				res[i] = simulate(p.opts, eng, rate, n, uint64(load*1000))
				slo := "-"
				if p.opts.SLO > 0 {
					slo = fmt.Sprintf("%.1f%%", 100*float64(res[i].met)/float64(res[i].requests))
				}
				fmt.Fprintf(&table, "| %s | %.0f | %s | %.0f | %.2f | %.2f | %.1f | %s |\n", eng.name, rate, p.name,
					res[i].throughput, res[i].p50.Seconds()*1e3, res[i].p99.Seconds()*1e3, res[i].meanBatch, slo)
			}
			// the SLO batcher, never told a delay, keeps within 15% of the
			// better fixed delay's P99 and 1% of its throughput
			sloRes, best := res[len(res)-1], res[0]
			if res[1].p99 < best.p99 {
				best = res[1]
			}
			if float64(sloRes.p99) > 1.15*float64(best.p99) || sloRes.throughput < 0.99*best.throughput {
				t.Errorf("%s at %.0f/s: slo p99 %v, %.0f/s against the better fixed delay's p99 %v, %.0f/s", eng.name, rate,
					sloRes.p99, sloRes.throughput, best.p99, best.throughput)
			}
		}
	}
	t.Logf("simulated, %d Poisson arrivals per row, max_batch_size 32, one instance:\n%s", n, table.String())
}

// TestSLOBatcherLoadSweep drives the SLO batcher (objective 10ms,
// max_batch_size 32) and the fixed delays over a load sweep, from 2% of
// the engine's capacity at batch 32 to 105% (past saturation), on
// simulated engines: one whose cost per request falls with the batch (an
// accelerator), one whose cost is nearly proportional to the batch (a CPU
// engine like tinycnn's, measured with kiln run: 0.044ms at batch 1,
// 1.34ms at 32), and the accelerator on two instances. It asserts what the
// batcher is for:
//   - at low load (up to 5% of capacity) no request that finds an instance
//     idle waits: no added delay, batches of one;
//   - batches grow with the load (the mean batch never falls by more than
//     5% from one load to the next), so that the capacity of batches of
//     the mean size covers the arrival rate (within 2%);
//   - where a fixed delay meets the objective (its P99 within 10ms), the
//     SLO batcher does too, and at every load its throughput is within 1%
//     of the better fixed delay's (past saturation: the same capacity).
func TestSLOBatcherLoadSweep(t *testing.T) {
	if raceEnabled {
		t.Skip("the simulation runs on one goroutine: nothing for the race detector, which slows it tenfold")
	}
	engines := []simEngine{
		{name: "2ms + 0.1ms/request", fixed: 2 * time.Millisecond, per: 100 * time.Microsecond, noise: 0.1},
		{name: "0.004ms + 0.04ms/request", fixed: 4 * time.Microsecond, per: 40 * time.Microsecond, noise: 0.1},
		{name: "2ms + 0.1ms/request, 2 instances", fixed: 2 * time.Millisecond, per: 100 * time.Microsecond, noise: 0.1, instances: 2},
	}
	loads := []float64{0.02, 0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 1.05}
	const n = 10000
	const target = 10 * time.Millisecond
	var table strings.Builder
	fmt.Fprintln(&table, "| engine | load | slo batch | slo held | slo p99 ms | fixed 500us p99 | fixed 2ms p99 | slo infer/s | best fixed infer/s |")
	fmt.Fprintln(&table, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, eng := range engines {
		capacity := eng.capacity(32)
		prevBatch := 0.0
		for _, load := range loads {
			rate := load * capacity
			seed := uint64(load*1000) + 7
			opts := func(o Options) Options {
				o.MaxBatchSize, o.Batching, o.Instances = 32, true, eng.instances
				return o
			}
			slo := simulate(opts(Options{SLO: target}), eng, rate, n, seed)
			f1 := simulate(opts(Options{MaxQueueDelay: 500 * time.Microsecond}), eng, rate, n, seed)
			f2 := simulate(opts(Options{MaxQueueDelay: 2 * time.Millisecond}), eng, rate, n, seed)
			best := f1
			if f2.p99 < best.p99 {
				best = f2
			}
			fmt.Fprintf(&table, "| %s | %.0f%% | %.2f | %d | %.2f | %.2f | %.2f | %.0f | %.0f |\n", eng.name, 100*load, slo.meanBatch, slo.held,
				slo.p99.Seconds()*1e3, f1.p99.Seconds()*1e3, f2.p99.Seconds()*1e3, slo.throughput, best.throughput)
			where := fmt.Sprintf("%s at %.0f%% of capacity (%.0f/s)", eng.name, 100*load, rate)
			if load <= 0.05 && slo.held > 0 {
				t.Errorf("%s: %d requests held although an instance was idle; want none", where, slo.held)
			}
			if slo.meanBatch < 0.95*prevBatch {
				t.Errorf("%s: mean batch %.2f, below %.2f at the lower load before", where, slo.meanBatch, prevBatch)
			}
			prevBatch = slo.meanBatch
			// the capacity of batches of the mean size covers the arrivals
			b := slo.meanBatch
			if c := eng.capacity(b); load < 1 && c < 0.98*slo.throughput {
				t.Errorf("%s: mean batch %.2f, whose capacity %.0f/s is below the %.0f/s served", where, b, c, slo.throughput)
			}
			if best.p99 <= target && slo.p99 > target {
				t.Errorf("%s: slo p99 %v past the objective %v that the fixed delay meets (p99 %v)", where, slo.p99, target, best.p99)
			}
			if slo.throughput < 0.99*best.throughput {
				t.Errorf("%s: slo %.0f/s, below the better fixed delay's %.0f/s", where, slo.throughput, best.throughput)
			}
		}
	}
	t.Logf("simulated, %d Poisson arrivals per row, max_batch_size 32, objective %v:\n%s", n, target, table.String())
}

// mlpCurve is the engine cost per batch size of bench/slobatch's MLP (4
// Gemm+Relu layers of 1024x1024 float32 weights) on the 2-core machine of
// bench/results/slo-batching-mlp.md, measured with kiln run (p50): a
// batch of one reads 16 MiB of weights for one request, a batch of 32 for
// 32, so the cost per request falls from 313us to 81us.
var mlpCurve = []costPoint{{1, 313 * time.Microsecond}, {2, 349 * time.Microsecond}, {4, 423 * time.Microsecond},
	{8, 651 * time.Microsecond}, {16, 2028 * time.Microsecond}, {32, 2598 * time.Microsecond}}

// mlpCurveSlow16 is the same MLP's cost curve in the lead's real sweep of
// bench/results/slo-batching-mlp.md ("Real sweep on a quieter machine",
// the lower of two passes): there batch 16 is slower per request (170us)
// than 8 (84us) and 32 (125us), and on it the SLO batcher stopped short of
// full batches near and past saturation.
var mlpCurveSlow16 = []costPoint{{1, 292 * time.Microsecond}, {2, 363 * time.Microsecond}, {4, 433 * time.Microsecond},
	{8, 675 * time.Microsecond}, {16, 2715 * time.Microsecond}, {32, 4008 * time.Microsecond}}

// TestSLOBatcherMLPSweep drives the SLO batcher and the fixed delays of
// 500us and 2ms over a load sweep on the measured cost curves of
// bench/slobatch's MLP, from 2% of the capacity at batch 32 to past
// saturation: the simulated counterpart of
// bench/results/slo-batching-mlp.md. Two curves: mlpCurve, and
// mlpCurveSlow16 of the real sweep, where batch 16 is slower per request
// than 8 and 32 (the objective, 5 and 7ms, about the P99 the fixed 2ms
// delay reaches at 80% load on each). Each open loop (Poisson arrivals)
// and closed as kiln perf's request-rate mode is (at most 64 requests
// outstanding, 4ms of request path to the queue, counted in the latency: on
// the slow-16 curve the SLO batcher before split served 13% less than
// the fixed 2ms delay at 105% load, in batches of 21 against 31). It
// asserts what the issue asks:
//   - at low load (up to 5%) no request that finds the instance idle waits,
//     and batches are of one;
//   - where a batch costs no more than two smaller ones (mlpCurve, open
//     loop), batches grow with the load (the mean never falls by more than
//     5% from one load to the next);
//   - below saturation it serves the offered rate (closed loop: as much
//     as the better fixed delay, the window bounding both), and the objective is
//     met (the P99 less the request path within it) wherever capacity
//     allows (up to 80% load, and wherever a fixed delay meets it);
//   - at the same throughput (each offered rate below saturation) the SLO
//     batcher's P99 is at most the better fixed delay's (up to 80% load;
//     within 10% at 90%, where every policy runs nearly full batches);
//   - at every load, past saturation too, its throughput is at least 99%
//     of the better fixed delay's.
func TestSLOBatcherMLPSweep(t *testing.T) {
	if raceEnabled {
		t.Skip("the simulation runs on one goroutine: nothing for the race detector, which slows it tenfold")
	}
	const window, path = 64, 4 * time.Millisecond
	cases := []struct {
		eng    simEngine
		target time.Duration
		growth bool
	}{
		{simEngine{name: "mlp", curve: mlpCurve, noise: 0.1}, 5 * time.Millisecond, true},
		{simEngine{name: "mlp, slow batch 16", curve: mlpCurveSlow16, noise: 0.1}, 7 * time.Millisecond, false},
		{simEngine{name: "mlp, closed loop", curve: mlpCurve, noise: 0.1, window: window, path: path}, 5 * time.Millisecond, false},
		{simEngine{name: "mlp, slow batch 16, closed loop", curve: mlpCurveSlow16, noise: 0.1, window: window, path: path}, 7 * time.Millisecond, false},
	}
	for _, c := range cases {
		t.Run(c.eng.name, func(t *testing.T) { mlpSweep(t, c.eng, c.target, c.growth) })
	}
}

// mlpSweep is TestSLOBatcherMLPSweep on one engine; growth asserts that
// the mean batch grows with the load.
func mlpSweep(t *testing.T, eng simEngine, target time.Duration, growth bool) {
	loads := []float64{0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.05, 1.2}
	const n = 10000
	var table strings.Builder
	fmt.Fprintf(&table, "| load | rate req/s | batcher | infer/s | p50 ms | p99 ms | mean batch | held | within %v |\n", target)
	fmt.Fprintln(&table, "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	capacity := eng.capacity(32)
	prevBatch := 0.0
	for _, load := range loads {
		rate := load * capacity
		seed := uint64(load*1000) + 11
		pols := []struct {
			name string
			opts Options
		}{
			{"fixed 500us", Options{MaxQueueDelay: 500 * time.Microsecond}},
			{"fixed 2ms", Options{MaxQueueDelay: 2 * time.Millisecond}},
			{fmt.Sprintf("slo %v", target), Options{SLO: target}},
		}
		res := make([]simResult, len(pols))
		for i, p := range pols {
			p.opts.MaxBatchSize, p.opts.Batching = 32, true
			r := simulate(p.opts, eng, rate, n, seed)
			res[i] = r
			fmt.Fprintf(&table, "| %.0f%% | %.0f | %s | %.0f | %.2f | %.2f | %.2f | %d | %.1f%% |\n", 100*load, rate, p.name,
				r.throughput, r.p50.Seconds()*1e3, r.p99.Seconds()*1e3, r.meanBatch, r.held, 100*r.within(target+eng.path))
		}
		slo, best := res[2], res[0]
		if res[1].p99 < best.p99 {
			best = res[1]
		}
		where := fmt.Sprintf("at %.0f%% of capacity (%.0f/s)", 100*load, rate)
		if load <= 0.05 && (slo.held > 0 || slo.meanBatch > 1.05) {
			t.Errorf("%s: %d requests held although the instance was idle, mean batch %.2f; want none, 1", where, slo.held, slo.meanBatch)
		}
		if growth && slo.meanBatch < 0.95*prevBatch {
			t.Errorf("%s: mean batch %.2f, below %.2f at the lower load before", where, slo.meanBatch, prevBatch)
		}
		prevBatch = slo.meanBatch
		// (closed loop, the window bounds what any policy serves)
		if load < 1 && slo.throughput < 0.98*min(rate, best.throughput) {
			t.Errorf("%s: slo %.0f/s, below the offered rate", where, slo.throughput)
		}
		if (load <= 0.8 || best.p99 <= target+eng.path) && slo.p99 > target+eng.path {
			t.Errorf("%s: slo p99 %v past the objective %v and the request path %v (the better fixed delay's p99 %v)", where, slo.p99, target, eng.path, best.p99)
		}
		if tol := map[bool]float64{true: 1, false: 1.1}[load <= 0.8]; load < 1 && float64(slo.p99) > tol*float64(best.p99) {
			t.Errorf("%s: slo p99 %v above the better fixed delay's %v", where, slo.p99, best.p99)
		}
		if slo.throughput < 0.99*best.throughput {
			t.Errorf("%s: slo %.0f/s, below the better fixed delay's %.0f/s", where, slo.throughput, best.throughput)
		}
	}
	t.Logf("simulated %s, %d Poisson arrivals per row, max_batch_size 32, capacity %.0f/s at batch 32:\n%s", eng.name, n, capacity, table.String())
}

// TestSLOBatcherSharedCPU: the engine shares the machine with the request
// path, as kiln serve's CPU engine does (simEngine.pathCPU): while a batch
// runs, requests get through the path at pathShare of the speed. A batcher
// that sends what the queue holds as soon as the instance is free then
// starves the path, which delivers a few requests per batch, and runs small
// batches that cost the most CPU per request (bench/results/
// slo-batching-mlp.md: batches of 21-23 where the fixed delay filled 32,
// 2-4% less throughput). The SLO batcher knows the requests in flight
// (Options.InFlight) and waits for those still in the path (sloPolicy.fill).
// Asserted: past the fixed delay's saturation, the SLO batcher serves at
// least 99% of what the fixed 2ms delay serves (closed loop, 64 requests
// outstanding, the slow-16 MLP curve). Run with -v for the table.
func TestSLOBatcherSharedCPU(t *testing.T) {
	if raceEnabled {
		t.Skip("the simulation runs on one goroutine: nothing for the race detector, which slows it tenfold")
	}
	var table strings.Builder
	fmt.Fprintln(&table, "| path CPU | path share | rate req/s | fixed 2ms infer/s, p99 ms, batch | slo 10ms infer/s, p99 ms, batch |")
	fmt.Fprintln(&table, "| ---: | ---: | ---: | ---: | ---: |")
	for _, c := range []struct {
		pathCPU time.Duration
		share   float64
	}{{40 * time.Microsecond, 0.2}, {40 * time.Microsecond, 0.4}, {60 * time.Microsecond, 0.2}, {60 * time.Microsecond, 0.4}, {100 * time.Microsecond, 0.4}} {
		eng := simEngine{name: "shared", curve: mlpCurveSlow16, noise: 0.1, window: 64, pathCPU: c.pathCPU, pathShare: c.share}
		for _, rate := range []float64{2000, 4000, 6000, 8000, 10000} {
			var res [2]simResult
			for i, o := range []Options{{MaxQueueDelay: 2 * time.Millisecond}, {SLO: 10 * time.Millisecond}} {
				o.MaxBatchSize, o.Batching = 32, true
				res[i] = simulate(o, eng, rate, 10000, 7)
			}
			fixed, slo := res[0], res[1]
			fmt.Fprintf(&table, "| %v | %.1f | %.0f | %.0f, %.2f, %.1f | %.0f, %.2f, %.1f |\n", c.pathCPU, c.share, rate,
				fixed.throughput, fixed.p99.Seconds()*1e3, fixed.meanBatch, slo.throughput, slo.p99.Seconds()*1e3, slo.meanBatch)
			if fixed.throughput < 0.97*rate && slo.throughput < 0.99*fixed.throughput {
				t.Errorf("path CPU %v, share %.1f, %.0f/s offered: slo %.0f/s, below the fixed delay's %.0f/s", c.pathCPU, c.share, rate, slo.throughput, fixed.throughput)
			}
		}
	}
	t.Logf("simulated, the request path sharing the machine with the engine, 10,000 Poisson arrivals per row, at most 64 outstanding:\n%s", table.String())
}

// mlpCurveQuiet is the MLP's engine cost per batch size measured on quiet
// pinned cores (bench/results/slo-batching-mlp.md, "Moderate load",
// 2026-12-06): a batch of 2 costs 256us per request, one of 8 141us, so
// that at 2,000 req/s batches of 1-2 keep the instance about twice as
// busy as batches of 8.
var mlpCurveQuiet = []costPoint{{1, 453 * time.Microsecond}, {2, 513 * time.Microsecond}, {4, 722 * time.Microsecond},
	{8, 1127 * time.Microsecond}, {16, 4139 * time.Microsecond}, {32, 4391 * time.Microsecond}}

// TestSLOBatcherModerateLoad is the real sweep of
// bench/results/slo-batching-mlp.md ("Moderate load") in the simulation:
// the quiet-core MLP curve, the request path sharing the machine with
// the engine (simEngine.pathCPU), Poisson arrivals with at most 64
// outstanding, the fixed 2ms delay against the SLO batcher (objective
// 10ms), from 1,000 to 8,000 req/s, with the hand-over from the steady
// rule to the saturation rule (3,500-4,500 req/s in the real sweep) in
// steps of 500. Asserted, the criterion row by row, each row the
// same seeded arrivals for both, the first 4,000 of each run's 20,000
// requests left out (the real sweep's server had run the lower rates
// before, and kiln perf measures once the latencies are stable; counting
// them, the start from an empty cost model and rate estimate raised the
// SLO batcher's P99 past saturation by up to 7%): no row where the SLO
// batcher's P99 is above the fixed delay's while it serves no more
// (within 0.5%, the share of a run's time the last requests' latencies
// make: both serve the same arrivals); where the fixed delay saturates (below 97%
// of the offered rate) the SLO batcher serves at least as much (within
// 1%); at 1,000 req/s its P50 stays under 2ms (no delay at light load).
// The settings marked not asserted are logged only: the first two of
// them as before the hand-over rule (bench/results/slo-batching-mlp.md),
// the last ("x1.3", the engine's cost 30% above kiln run's, as the
// request path on the same cores makes it) the one whose fixed-delay
// batches follow the real quiet-core sweep's near saturation (19-28 at
// 4,000-5,000 req/s there, 21-28 at 4,500-5,000 here). Run with -v for
// the table.
func TestSLOBatcherModerateLoad(t *testing.T) {
	if raceEnabled {
		t.Skip("the simulation runs on one goroutine: nothing for the race detector, which slows it tenfold")
	}
	var table strings.Builder
	fmt.Fprintln(&table, "| path CPU | path share | cost | rate req/s | fixed 2ms infer/s, p50, p99 ms, batch | slo 10ms infer/s, p50, p99 ms, batch | criterion |")
	fmt.Fprintln(&table, "| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, c := range []struct {
		pathCPU time.Duration
		share   float64
		scale   float64
		assert  bool
	}{
		{150 * time.Microsecond, 0.3, 1, true}, {180 * time.Microsecond, 0.2, 1, true},
		{200 * time.Microsecond, 0.3, 1, false}, {200 * time.Microsecond, 0.5, 1, false},
		{50 * time.Microsecond, 0.4, 1.3, false},
	} {
		eng := simEngine{name: "shared", curve: scaleCurve(mlpCurveQuiet, c.scale), noise: 0.1, window: 64, pathCPU: c.pathCPU, pathShare: c.share,
			warmup: 4000}
		for _, rate := range []float64{1000, 2000, 3000, 3500, 4000, 4500, 5000, 6000, 7000, 8000} {
			var res [2]simResult
			for i, o := range []Options{{MaxQueueDelay: 2 * time.Millisecond}, {SLO: 10 * time.Millisecond}} {
				o.MaxBatchSize, o.Batching = 32, true
				res[i] = simulate(o, eng, rate, 20000, 13)
			}
			fixed, slo := res[0], res[1]
			ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 }
			verdict := "met"
			switch {
			case slo.p99 > fixed.p99 && slo.throughput <= 1.005*fixed.throughput:
				verdict = "**not met**: higher p99, no more served"
			case slo.p99 > fixed.p99:
				verdict = "met (more served, higher p99)"
			}
			fmt.Fprintf(&table, "| %v | %.1f | x%.1f | %.0f | %.0f, %.2f, %.2f, %.1f | %.0f, %.2f, %.2f, %.1f | %s |\n", c.pathCPU, c.share, c.scale, rate,
				fixed.throughput, ms(fixed.p50), ms(fixed.p99), fixed.meanBatch, slo.throughput, ms(slo.p50), ms(slo.p99), slo.meanBatch, verdict)
			where := fmt.Sprintf("path CPU %v, share %.1f, cost x%.1f, %.0f/s offered", c.pathCPU, c.share, c.scale, rate)
			if !c.assert {
				continue
			}
			if slo.p99 > fixed.p99 && slo.throughput <= 1.005*fixed.throughput {
				t.Errorf("%s: slo p99 %v above the fixed delay's %v, serving %.0f/s against %.0f/s", where, slo.p99, fixed.p99, slo.throughput, fixed.throughput)
			}
			if fixed.throughput < 0.97*rate && slo.throughput < 0.99*fixed.throughput {
				t.Errorf("%s: slo %.0f/s, below the fixed delay's %.0f/s", where, slo.throughput, fixed.throughput)
			}
			if rate == 1000 && slo.p50 > 2*time.Millisecond {
				t.Errorf("%s: slo p50 %v at light load; want under 2ms", where, slo.p50)
			}
		}
	}
	t.Logf("simulated, the quiet-core MLP curve, the request path sharing the machine, 20,000 Poisson arrivals per row (the first 4,000 not counted), at most 64 outstanding:\n%s", table.String())
}

// scaleCurve returns curve with every cost times f.
func scaleCurve(curve []costPoint, f float64) []costPoint {
	out := make([]costPoint, len(curve))
	for i, p := range curve {
		out[i] = costPoint{p.size, time.Duration(float64(p.d) * f)}
	}
	return out
}
