package scheduler

import (
	"math"
	"sync/atomic"
	"time"
)

// The SLO batcher (Options.SLO > 0) replaces the fixed queue delay with a
// latency objective. It learns what a batch of each size costs (an
// exponentially weighted mean and mean deviation of each run's time, per
// batch size, as TCP estimates round trips) and the rate at which requests
// arrive, and each time an instance is free it decides:
//
//   - send now when the queue fills MaxBatchSize;
//   - send now when waiting for one more request would break the oldest
//     request's deadline (its arrival + the objective, less the estimated
//     P99 cost, mean + 3 deviations, of a batch one larger than the one at
//     hand);
//   - send now when the batch at hand already keeps up with the arrivals (its
//     size per cost, times the instances, is at least half the arrival
//     rate: the requests arriving while it runs join the next one): the
//     instance is idle and waiting cannot fill more than it costs;
//   - otherwise wait, for more requests or for the deadline above (deciding
//     again after twice the mean time between arrivals if none comes).
//
// It does not cap a batch below MaxBatchSize to keep its run within the
// objective: under a backlog the largest batches drain it fastest.
//
// Before any batch has been measured it sends at once. Preferred batch
// sizes and MaxQueueDelay are not used.

// Dispatch reasons of the SLO batcher, the keys of Scheduler.Decisions.
const (
	// DecisionLearning: no batch measured yet, sent at once.
	DecisionLearning = "learning"
	// DecisionFull: the batch reached MaxBatchSize.
	DecisionFull = "full"
	// DecisionDeadline: waiting longer would break the oldest request's
	// deadline.
	DecisionDeadline = "deadline"
	// DecisionKeepsUp: the batch at hand keeps up with the arrival rate.
	DecisionKeepsUp = "keeps_up"
	// DecisionWait: the batcher holds the queue to fill a larger batch (a
	// decision to wait, not counted in Decisions).
	DecisionWait = "wait"
)

// cost weights, as TCP's round-trip estimator (RFC 6298).
const (
	costAlpha = 1.0 / 8 // mean
	costBeta  = 1.0 / 4 // mean deviation
	// costDevs deviations above the mean estimate a batch's P99 time.
	costDevs = 3
	// gapAlpha weighs each arrival's gap in the arrival rate estimate.
	gapAlpha = 1.0 / 8
)

// costModel estimates the time of a batch of each size, learned from runs.
type costModel struct {
	mean, dev []float64 // seconds, by batch size; index 0 unused
	n         []uint64  // runs measured, by batch size
	// estMean and estP99 are the estimates of every size (estimate).
	estMean, estP99 []float64
	any             bool
}

func newCostModel(maxBatch int) *costModel {
	n := max(maxBatch, 1) + 1
	return &costModel{mean: make([]float64, n), dev: make([]float64, n), n: make([]uint64, n)}
}

// observe adds the time d of one run of a batch of size.
func (c *costModel) observe(size int, d time.Duration) {
	if size < 1 || size >= len(c.n) || d < 0 {
		return
	}
	x := d.Seconds()
	if c.n[size] == 0 {
		c.mean[size], c.dev[size] = x, 0
	} else {
		c.dev[size] += costBeta * (math.Abs(x-c.mean[size]) - c.dev[size])
		c.mean[size] += costAlpha * (x - c.mean[size])
	}
	c.n[size]++
	c.refresh()
}

// measured reports whether any batch size has been measured.
func (c *costModel) measured() bool { return c.any }

// refresh recomputes the estimates of every size (see estimate) after a
// measurement, in one pass each way.
func (c *costModel) refresh() {
	k := len(c.n)
	if c.estMean == nil {
		c.estMean, c.estP99 = make([]float64, k), make([]float64, k)
	}
	lo := make([]int, k) // nearest measured size at or below, 0 for none
	for i, last := 1, 0; i < k; i++ {
		if c.n[i] > 0 {
			last = i
		}
		lo[i] = last
	}
	hi := 0 // nearest measured size at or above
	for i := k - 1; i >= 1; i-- {
		if c.n[i] > 0 {
			hi = i
		}
		var m, d float64
		l := lo[i]
		switch {
		case l == i:
			m, d = c.mean[i], c.dev[i]
		case l > 0 && hi > 0:
			f := float64(i-l) / float64(hi-l)
			m = c.mean[l] + f*(c.mean[hi]-c.mean[l])
			d = c.dev[l] + f*(c.dev[hi]-c.dev[l])
		case l > 0:
			f := float64(i) / float64(l)
			m, d = c.mean[l]*f, c.dev[l]*f
		case hi > 0:
			m, d = c.mean[hi], c.dev[hi]
		}
		c.estMean[i], c.estP99[i] = m, m+costDevs*d
	}
	c.any = hi > 0
}

// estimate returns the mean and P99 time of a batch of size (in seconds).
// A size not measured is interpolated between the nearest measured sizes
// below and above; above every measured size it grows in proportion to the
// size (an upper bound, since batching costs less per request); below
// every measured size it is the smallest measured size's (also an upper
// bound). ok is false before any measurement.
func (c *costModel) estimate(size int) (mean, p99 float64, ok bool) {
	if !c.any {
		return 0, 0, false
	}
	size = max(size, 1)
	if size < len(c.n) {
		return c.estMean[size], c.estP99[size], true
	}
	// beyond the largest batch: in proportion to the largest's
	k := len(c.n) - 1
	f := float64(size) / float64(k)
	return c.estMean[k] * f, c.estP99[k] * f, true
}

// sloPolicy is the SLO batcher's state: the cost model and the arrival rate.
type sloPolicy struct {
	target    time.Duration
	maxBatch  int
	instances int
	cost      *costModel
	// gap is the mean time between arrivals per batch item, in seconds
	// (negative before two arrivals).
	gap  float64
	last time.Time // latest arrival
	// decisions counts dispatch decisions by reason.
	decisions map[string]uint64
	met, miss atomic.Uint64
}

func newSLOPolicy(target time.Duration, maxBatch, instances int) *sloPolicy {
	return &sloPolicy{target: target, maxBatch: max(maxBatch, 1), instances: max(instances, 1),
		cost: newCostModel(maxBatch), gap: -1, decisions: map[string]uint64{}}
}

// arrived records the arrival of a request of size items at now.
func (p *sloPolicy) arrived(now time.Time, size int) {
	if !p.last.IsZero() {
		g := max(now.Sub(p.last).Seconds(), 0) / float64(max(size, 1))
		if p.gap < 0 {
			p.gap = g
		} else {
			p.gap += gapAlpha * (g - p.gap)
		}
	}
	p.last = now
}

// rate estimates the arrivals per second at now (batch items): the mean
// gap, or the time since the latest arrival when that is longer (the
// arrivals slowed down).
func (p *sloPolicy) rate(now time.Time) float64 {
	if p.gap < 0 {
		return 0
	}
	g := max(p.gap, now.Sub(p.last).Seconds())
	if g <= 0 {
		return math.Inf(1)
	}
	return 1 / g
}

// needed returns the smallest batch size (at most limit) whose throughput on
// every instance keeps up with rate arrivals per second (limit when none
// does).
func (p *sloPolicy) needed(rate float64, limit int) int {
	for m := 1; m <= limit; m++ {
		mean, _, ok := p.cost.estimate(m)
		if !ok || mean <= 0 || float64(m)/mean*float64(p.instances) >= rate {
			return m
		}
	}
	return limit
}

// decide says whether to send a batch of n items now, whose oldest request
// arrived at oldest, limit being the largest batch (MaxBatchSize). When
// not, wait is how long to wait at most before deciding again (an arrival
// also wakes the batcher).
func (p *sloPolicy) decide(now, oldest time.Time, n, limit int) (send bool, wait time.Duration, reason string) {
	if !p.cost.measured() {
		return true, 0, DecisionLearning
	}
	if n >= limit {
		return true, 0, DecisionFull
	}
	_, next, _ := p.cost.estimate(n + 1)
	slack := oldest.Add(p.target).Sub(now) - time.Duration(next*float64(time.Second))
	if slack <= 0 {
		return true, 0, DecisionDeadline
	}
	if n >= p.needed(keepUpFactor*p.rate(now), limit) {
		return true, 0, DecisionKeepsUp
	}
	// decide again by the deadline, or once two arrivals' time has passed
	// without any (the rate estimate is then lower)
	if g := time.Duration(2 * p.gap * float64(time.Second)); g > 0 {
		slack = min(slack, max(g, minWait))
	}
	return false, slack, DecisionWait
}

// minWait is the shortest wait the SLO batcher asks for before deciding
// again (timers are not finer than that).
const minWait = 50 * time.Microsecond

// SLOStats are an SLO batcher's counts: requests that finished within the
// objective (Met) and those that did not, or were refused for a full queue
// or a queue timeout (Missed).
type SLOStats struct {
	Target      time.Duration
	Met, Missed uint64
}

// SLOStats returns the counts of the SLO batcher; zero without Options.SLO.
func (s *Scheduler) SLOStats() SLOStats {
	if s.slo == nil {
		return SLOStats{}
	}
	return SLOStats{Target: s.slo.target, Met: s.slo.met.Load(), Missed: s.slo.miss.Load()}
}

// Decisions returns the SLO batcher's dispatch decisions so far by reason
// (DecisionFull, ...); nil without Options.SLO.
func (s *Scheduler) Decisions() map[string]uint64 {
	if s.slo == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.slo.decisions))
	for k, v := range s.slo.decisions {
		out[k] = v
	}
	return out
}

// Cost returns the SLO batcher's estimate of the mean and P99 time of a
// batch of size; ok is false without Options.SLO or before any run.
func (s *Scheduler) Cost(size int) (mean, p99 time.Duration, ok bool) {
	if s.slo == nil {
		return 0, 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, q, ok := s.slo.cost.estimate(size)
	return time.Duration(math.Round(m * 1e9)), time.Duration(math.Round(q * 1e9)), ok
}

// keepUpFactor scales the arrival rate a batch must keep up with for the
// SLO batcher to send it without waiting: below 1, because the requests
// that arrive while a batch runs make the next one larger anyway (tried on
// the simulated sweep of sim_test.go: 1 waits too often, from 0.5 down the
// batcher sends as soon as an instance is free up to high load, and waits
// to fill batches only when the queue is far below what the rate needs).
const keepUpFactor = 0.5
