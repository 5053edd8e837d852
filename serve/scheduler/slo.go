package scheduler

import (
	"math"
	"sync/atomic"
	"time"
)

// The SLO batcher (Options.SLO > 0) replaces the fixed queue delay with a
// latency objective. It learns what a batch of each size costs, c(b) (an
// exponentially weighted mean and mean deviation of each run's time, per
// batch size, as TCP estimates round trips), and the rate at which requests
// arrive, λ, and each time an instance is free it decides when to send and
// how many:
//
//   - how many: everything queued (up to MaxBatchSize), unless that batch's
//     estimated P99 time (mean + 3 deviations) would end past the oldest
//     request's deadline (its arrival + the objective): then as many as fit
//     the oldest request's remaining budget, when that lets more of the
//     queue meet their deadlines (the rest, with the requests due
//     meanwhile, running next) and the smaller batch still keeps up with
//     the arrivals (instances·b/c(b) at least λ/maxUtilization: below that
//     the queue only grows, and every request misses). A queue that no
//     size fits in time, or that arrives faster than any size keeps up
//     with, is sent whole: the largest batches drain a backlog fastest.
//   - split: of the batch at hand, only the first part when the cost model
//     says two batches cost the engine less than one by 10% (c(b) +
//     c(n-b) < 0.9·c(n)): an engine whose cost is not subadditive, such as
//     the MLP of bench/results/slo-batching-mlp.md on a CPU, whose batch of
//     16 took longer than two of 8, would otherwise run its slowest sizes
//     near saturation, where the queue holds what arrived during the last
//     batch (a load generator with a bounded number of requests
//     outstanding keeps it there), and serve less than a fixed delay that
//     fills batches of MaxBatchSize. One split in 16 is not made, so that
//     the whole batch's cost is measured again.
//   - when: a batch of MaxBatchSize is sent at once, and so is one that
//     cannot wait for one more request without breaking the oldest
//     request's deadline. Otherwise the batcher waits for more requests
//     when
//     (steady) the server's request path shares the cores (Options.InFlight)
//     and the arrival rate times the cost per request of the batch at hand
//     would keep the instances busy beyond a safe share: it waits for the
//     batch whose cost per request keeps them under it (see steady), or
//     (capacity) batches of the size at hand cannot keep up with the
//     arrivals (instances·n/c(n) below keepUpFactor·λ: the requests that
//     arrive while a batch runs make the next batch larger anyway, so
//     half the rate is enough), or
//     (latency) no other instance is free, and the next request is due
//     soon enough that waiting for it lowers the requests' total
//     latency: with n queued and the next due in δ = 1/λ, running n now
//     and the newcomer after them costs the newcomer c(n) - δ + c(1),
//     while waiting and running n+1 costs each of the n δ + c(n+1) - c(n)
//     more and the newcomer c(n+1); waiting wins
//     when (n+1)·(δ + c(n+1) - c(n)) < c(1), that is when the next request
//     is due within a fraction of c(1), which only an engine whose cost
//     per request falls with the batch (c(b)/b falling) ever gives.
//     It waits at most until that deadline, or twice the mean gap between
//     arrivals (then the rate estimate is lower and it decides again).
//   - otherwise it sends at once: at low load a request that finds an
//     instance idle runs without any added delay (on its caller's
//     goroutine, see runHere).
//
// As load rises the queue grows while the instances are busy, and a free
// instance takes it whole: batches grow until their capacity exceeds the
// arrival rate, with no delay decided beforehand.
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
	// DecisionKeepsUp: the batch at hand keeps up with the arrival rate,
	// and the next request is not due soon enough to wait for it.
	DecisionKeepsUp = "keeps_up"
	// DecisionBudget: part of the queue, as many requests as fit the oldest
	// request's remaining budget, so that more of the queue meets the
	// objective than with all of it.
	DecisionBudget = "budget"
	// DecisionSplit: part of the batch at hand, as two batches cost the
	// engine less than one (see sloPolicy.split).
	DecisionSplit = "split"
	// DecisionSaturated: the arrivals came near the instances' best
	// capacity and the batcher waited to fill a larger batch (see
	// sloPolicy.fill); sent when the wait ran out.
	DecisionSaturated = "saturated"
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
	// gapAlpha weighs each arrival's gap in the arrival rate estimate: over
	// about 32 arrivals, since with 8 (tried on sim_test.go's sweep) a few
	// close Poisson arrivals at light load made the estimate jump enough
	// to hold requests that found an instance idle.
	gapAlpha = 1.0 / 32
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
	// a batch costs at most what a larger one does: a size whose estimate
	// a stall raised, and that is not run again (the batcher avoids it for
	// that very estimate), would otherwise keep it for good
	for i := k - 2; i >= 1; i-- {
		c.estMean[i] = min(c.estMean[i], c.estMean[i+1])
		c.estP99[i] = min(c.estP99[i], c.estP99[i+1])
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
	// slowGap is gap over about 256 arrivals (satAlpha), steadier: the
	// saturation rule (fill) decides on it; freed is when the latest
	// batch ended.
	slowGap  float64
	arrivals uint64 // items arrived
	freed    time.Time
	// freedSize is the size of the batch that ended at freed
	freedSize int
	// arriving is how many requests the server is working on that have
	// not reached this scheduler's queue yet (0: unknown), set before
	// each decide
	arriving int
	// sharedPath: arriving was above 0 at least once, that is the server
	// tells its requests in flight and some were in its request path (the
	// steady rule applies only then)
	sharedPath bool
	// decisions counts dispatch decisions by reason, of the batches taken;
	// picked is the reason of the latest pick's batch, not yet taken.
	decisions map[string]uint64
	picked    string
	splits    uint64 // splits decided (see split)
	met, miss atomic.Uint64
}

func newSLOPolicy(target time.Duration, maxBatch, instances int) *sloPolicy {
	return &sloPolicy{target: target, maxBatch: max(maxBatch, 1), instances: max(instances, 1),
		cost: newCostModel(maxBatch), gap: -1, slowGap: -1, decisions: map[string]uint64{}}
}

// observe records a batch of size that ended at end and took d.
func (p *sloPolicy) observe(end time.Time, size int, d time.Duration) {
	p.cost.observe(size, d)
	if end.After(p.freed) {
		p.freed = end
		p.freedSize = size
	}
}

// arrived records the arrival of a request of size items at now.
func (p *sloPolicy) arrived(now time.Time, size int) {
	if !p.last.IsZero() {
		g := max(now.Sub(p.last).Seconds(), 0) / float64(max(size, 1))
		if p.gap < 0 {
			p.gap, p.slowGap = g, g
		} else {
			p.gap += gapAlpha * (g - p.gap)
			p.slowGap += satAlpha * (g - p.slowGap)
		}
	}
	p.last = now
	p.arrivals += uint64(max(size, 1))
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

// decide says whether to send a batch of the first n queued items now,
// limit being the largest batch (MaxBatchSize), idle the instances free
// (the deciding one among them), and how many of them: take (1..n) when
// send. arrival(k) is the arrival time of the request that
// holds item k (0..n-1) of the batch, in queue order: arrival(0) is the
// oldest. When not sending, wait is how long to wait at most before
// deciding again (an arrival also wakes the batcher).
func (p *sloPolicy) decide(now time.Time, arrival func(k int) time.Time, n, limit, idle int) (send bool, take int, wait time.Duration, reason string) {
	if !p.cost.measured() {
		return true, n, 0, DecisionLearning
	}
	budget := arrival(0).Add(p.target).Sub(now).Seconds()
	rate := p.rate(now)
	f, fwait, saturated := p.fill(now, n, limit)
	if saturated {
		// throughput first: no cut to the budget, no split, the batch
		// filled towards the best size
		switch {
		case fwait > 0:
			return false, 0, fwait, DecisionWait
		case n >= limit:
			return true, n, 0, DecisionFull
		}
		return true, n, 0, DecisionSaturated
	}
	if b := p.cut(now, arrival, n, limit, budget, rate); b < n {
		return true, b, 0, DecisionBudget
	}
	if b := p.split(n); b < n {
		return true, b, 0, DecisionSplit
	}
	if f > n {
		if fwait > 0 {
			return false, 0, fwait, DecisionWait
		}
		return true, n, 0, DecisionSaturated
	}
	if n >= limit {
		return true, n, 0, DecisionFull
	}
	_, next, _ := p.cost.estimate(n + 1)
	slack := budget - next
	if slack <= 0 {
		return true, n, 0, DecisionDeadline
	}
	wait = time.Duration(slack * float64(time.Second))
	if w, ok := p.steady(now, arrival(0), n, limit, budget, rate); ok {
		return false, 0, w, DecisionWait
	}
	if n >= p.needed(keepUpFactor*rate, limit) && (idle > 1 || !p.worthWaiting(rate, n, slack)) {
		return true, n, 0, DecisionKeepsUp
	}
	// decide again by the deadline, or once two arrivals' time has passed
	// without any (the rate estimate is then lower)
	if g := time.Duration(2 * p.gap * float64(time.Second)); g > 0 {
		wait = min(wait, max(g, minWait))
	}
	return false, 0, wait, DecisionWait
}

// cut returns how many of the n items at hand to send: n, unless a batch
// of n would end (by its estimated P99 time) past the oldest request's
// deadline and a smaller batch b, the rest (the n-b left, with the
// requests due while b runs) following it, lets more of the n meet their
// deadlines. b keeps up with the arrival rate at maxUtilization: a cut
// below that only grows the queue. The b that meets the most (the largest
// of equals); n when no cut meets more.
func (p *sloPolicy) cut(now time.Time, arrival func(k int) time.Time, n, limit int, budget, rate float64) int {
	if n < 2 {
		return n
	}
	_, qn, _ := p.cost.estimate(n)
	if qn <= budget {
		return n
	}
	// left[k]: the time item k has left until its deadline, in seconds
	var buf [64]float64
	left := buf[:0]
	for k := range n {
		left = append(left, arrival(k).Add(p.target).Sub(now).Seconds())
	}
	met := func(from, to int, end float64) int {
		c := 0
		for _, l := range left[from:to] {
			if end <= l {
				c++
			}
		}
		return c
	}
	best, bestMet := n, met(0, n, qn)
	for b := n - 1; b >= max(p.needed(rate/maxUtilization, limit), 1); b-- {
		mb, qb, _ := p.cost.estimate(b)
		if qb > budget {
			continue // the oldest misses as it would with all n
		}
		rest := n - b + int(min(math.Ceil(rate*mb), float64(limit)))
		_, qr, _ := p.cost.estimate(min(rest, limit))
		if m := met(0, b, qb) + met(b, n, qb+qr); m > bestMet {
			best, bestMet = b, m
		}
	}
	return best
}

// split returns how many of the n items at hand to send so that the
// instance's time goes furthest: n, unless running them as two batches, b
// now and the n-b after (with whatever arrives meanwhile), costs less than
// one batch of n by splitGain: an engine's cost need not be subadditive,
// as the MLP of bench/results/slo-batching-mlp.md on a CPU, whose batch
// of 16 took longer than two of 8, so that a batcher that sends whatever
// the queue holds runs its slowest sizes near saturation. b is the larger
// part (the oldest requests first) of the cheapest split. Every
// splitExplore-th split is not made, and the batch of n runs whole: sizes
// no longer run keep their estimates, and an estimate raised by a stall
// would otherwise split that size for good.
func (p *sloPolicy) split(n int) int {
	if n < 2 {
		return n
	}
	cn, _, _ := p.cost.estimate(n)
	best, bestCost := n, cn*(1-splitGain)
	for b := n - 1; 2*b >= n; b-- {
		cb, _, _ := p.cost.estimate(b)
		cr, _, _ := p.cost.estimate(n - b)
		if cb+cr < bestCost {
			best, bestCost = b, cb+cr
		}
	}
	if best < n {
		p.splits++
		if p.splits%splitExplore == 0 {
			return n
		}
	}
	return best
}

// fill is the saturation rule: when the arrival rate (slowGap, over about
// 256 arrivals) reaches satFactor of the instances' capacity in batches of
// the size that serves the most requests per second (bBest: the largest
// size within 2% of the best n/c(n), MaxBatchSize on an engine whose cost
// per request falls with the batch), and batches of the n items at hand
// serve satGain less than that (so less than the rate: the queue grows
// faster than batches of n drain it), the batcher waits to fill a batch of
// bBest, as a fixed delay does, for at most satWait times the time the
// missing items take to arrive at that rate, counted from the end of the
// latest batch (the requests at hand arrived while it ran, so their own
// age says nothing). It returns the size to fill (n when the rule does
// not apply) and how long to wait before deciding again (0: the time is
// up, send the n at hand).
//
// A second case waits the same way below saturation too: when the server
// is working on requests that have not reached the queue yet
// (Options.InFlight, less the queued and running ones), the batcher waits
// for them, up to a batch of bBest, at most c(bBest) after the latest
// batch ended. For sizes above the largest measured one this rule takes
// that one's cost (an optimistic guess, so that a queue held to small
// batches tries a larger one and measures it).
//
// fill also reports whether the instance is saturated: the arrival rate
// as above, or enough requests in the server (InFlight) to fill a batch of
// bBest. decide then puts throughput first: no cut to the oldest request's
// budget, no split, a batch filled towards bBest (in the real sweep of
// bench/results/slo-batching-mlp.md those two rules had kept the batches
// near saturation at 21-23 on average, a mix of 32s and 8s).
//
// This is for a server whose engine shares the CPU with its request path
// (kiln serve on a CPU, bench/results/slo-batching-mlp.md): there a batch
// sent as soon as an instance is free holds what arrived during the last
// one, a closed-loop load generator keeps it there, and smaller batches
// cost more CPU per request, leaving the request path less; waiting while
// the queue fills gives the cores to the request path.
func (p *sloPolicy) fill(now time.Time, n, limit int) (fill int, wait time.Duration, saturated bool) {
	if p.slowGap <= 0 || p.arrivals < satArrivals {
		return n, 0, false
	}
	rate := 1 / p.slowGap
	// sizes above the largest measured one cost, for this rule, what that
	// one does (not in proportion, as estimate has it): an optimistic
	// guess, so that a queue held to small batches tries a larger one,
	// whose cost is then measured
	top := 0
	for b := 1; b < len(p.cost.n); b++ {
		if p.cost.n[b] > 0 {
			top = b
		}
	}
	capacity := func(b int) float64 {
		mean, _, ok := p.cost.estimate(min(b, max(top, 1)))
		if !ok || mean <= 0 {
			return math.Inf(1)
		}
		return float64(p.instances*b) / mean
	}
	bestCap := 0.0
	for b := 1; b <= limit; b++ {
		bestCap = max(bestCap, capacity(b))
	}
	best := limit
	for ; best > 1 && capacity(best) < 0.98*bestCap; best-- {
	}
	// saturated: the arrivals near the best capacity, or enough requests
	// in the server to fill a batch of best
	saturated = rate >= satFactor*capacity(best) || (p.arriving > 0 && p.arriving >= best-n)
	if n >= best || capacity(n) >= (1-satGain)*capacity(best) {
		return n, 0, saturated
	}
	var end time.Time
	switch {
	case rate >= satFactor*capacity(best):
		end = p.freed.Add(time.Duration(satWait * float64(best-n) / rate * float64(time.Second)))
	case p.arriving > p.freedSize:
		// (InFlight may still count the latest batch's requests, answered
		// but not yet written back: only more than those count here)
		// requests are in the server already, held up in the request path
		// (whose CPU the engine takes while it runs): wait for them, up to
		// a batch of best, at most what the batch of best itself costs
		mean, _, _ := p.cost.estimate(best)
		end = p.freed.Add(time.Duration(mean * float64(time.Second)))
		best = min(best, n+p.arriving)
	default:
		return n, 0, saturated
	}
	if !now.Before(end) {
		return best, 0, saturated
	}
	return best, max(end.Sub(now), minWait), saturated
}

// satAlpha weighs each arrival's gap in slowGap; satFactor is the share
// of the best capacity at which the arrival rate counts as saturating;
// satGain, how much more than the batch at hand the best size must serve
// for the wait to be worth it (an engine whose cost per request is about
// flat in the batch never waits); satWait scales the time the saturation
// rule waits for the missing items.
// The rule waits for satArrivals arrivals first (slowGap starts from the
// first gap).
const (
	satAlpha    = 1.0 / 256
	satArrivals = 512
	satFactor   = 0.9
	satGain     = 0.1
	satWait     = 1.5
)

// splitGain is the share of a batch's time that splitting it in two must
// save for the SLO batcher to split it; splitExplore, how often (one in)
// a split is not made, so that the whole batch's cost is measured again.
const (
	splitGain    = 0.1
	splitExplore = 16
)

// worthWaiting reports whether, with n requests at hand and an idle
// instance, waiting for the next request (due in 1/rate) and running n+1
// lowers the requests' total latency against running n now and the next
// after them: (n+1)·(δ + c(n+1) - c(n)) < c(1), δ within slack (seconds).
func (p *sloPolicy) worthWaiting(rate float64, n int, slack float64) bool {
	if rate <= 0 || math.IsInf(rate, 1) {
		return false
	}
	delta := 1 / rate
	if delta >= slack {
		return false
	}
	c1, _, _ := p.cost.estimate(1)
	cn, _, _ := p.cost.estimate(n)
	cn1, _, _ := p.cost.estimate(n + 1)
	return float64(n+1)*(delta+cn1-cn) < c1
}

// steady is the utilization rule, for moderate load: when the arrival
// rate times the cost per request of a batch of the n items at hand
// (c(n)/n, over the instances) would keep the instances busier than
// busyUtilization, the batcher waits for the smallest batch b whose cost
// per request keeps them at most that busy, instead of sending a small
// batch to an idle instance. Below saturation a batcher that sends
// whatever is queued as soon as an instance is free runs batches of one
// or two at moderate load (the arrivals during a batch of 2 are about 2),
// and on an engine whose cost per request falls steeply with the batch
// (bench/results/slo-batching-mlp.md, the MLP on a CPU: 256us per request
// at batch 2, 141us at 8) those keep the instance, and the request path
// sharing its cores, near their small-batch capacity: bursts then build
// queues, and the P99 (37ms at 2,000 req/s in the real sweep, against the
// fixed 2ms delay's 22ms) is far above the P50 (2ms).
//
// The rate is the lower of the recent estimate (rate, which falls as soon
// as the arrivals pause) and the steadier one over about 256 arrivals
// (slowGap), so that a few close arrivals at light load do not hold a
// request. The wait is bounded: b must arrive (at that rate, from the
// later of the oldest request's arrival and the latest batch's end, with
// satWait's margin) early enough for a batch of b to end, by its P99
// estimate, before the oldest request's deadline; past that time, or
// when no b fits, the rule gives way to the others. Sizes above the
// largest measured one cost, for this rule, what that one does (as in
// fill): an optimistic guess, so that the batcher tries and measures them.
// The rule applies only to a server that reports its requests in flight
// (Options.InFlight) and has had some in its request path (sharedPath):
// without a request path sharing the cores (the simulated engines of
// TestSLOBatcherSimulatedSweep, TestSLOBatcherLoadSweep and
// TestSLOBatcherMLPSweep) batches sent at once at 50-90% utilization
// gave lower P99s than waiting did (tried: up to twice the fixed delays').
// It returns how long to wait before deciding again, ok when it waits.
func (p *sloPolicy) steady(now, oldest time.Time, n, limit int, budget, rate float64) (wait time.Duration, ok bool) {
	if p.arriving > 0 {
		p.sharedPath = true
	}
	if !p.sharedPath || n >= limit || rate <= 0 || math.IsInf(rate, 1) {
		return 0, false
	}
	// the steadier of the two rates, once steadyArrivals have come,
	// unless the arrivals paused
	if p.slowGap <= 0 || p.arrivals < steadyArrivals {
		return 0, false
	}
	g := max(p.gap, p.slowGap)
	if since := now.Sub(p.last).Seconds(); since > 3*g {
		g = since
	}
	rate = 1 / g
	top := 0
	for b := 1; b < len(p.cost.n); b++ {
		if p.cost.n[b] > 0 {
			top = b
		}
	}
	util := func(b int) float64 {
		mean, _, _ := p.cost.estimate(min(b, max(top, 1)))
		return rate * mean / float64(b*p.instances)
	}
	if util(1) <= busyUtilization || util(n) <= steadyUtilization {
		// light load (single requests keep the instances at most
		// busyUtilization busy), or the batch at hand is large enough
		return 0, false
	}
	// the smallest size at steadyUtilization or below; when none is, the
	// smallest within 10% of the least utilization
	b, least := 0, math.Inf(1)
	for m := n + 1; m <= limit; m++ {
		u := util(m)
		if u <= steadyUtilization {
			b = m
			break
		}
		least = min(least, u)
	}
	if b == 0 {
		for m := n + 1; m <= limit; m++ {
			if util(m) <= 1.1*least {
				b = m
				break
			}
		}
	}
	if b == 0 || util(b) > (1-satGain)*util(n) {
		return 0, false // no larger size saves enough: the other rules
	}
	_, q, _ := p.cost.estimate(min(b, max(top, 1)))
	start := oldest
	if p.freed.After(start) {
		start = p.freed
	}
	end := start.Add(time.Duration(satWait * float64(b-1) / rate * float64(time.Second)))
	if last := now.Add(time.Duration((budget - q) * float64(time.Second))); last.Before(end) {
		end = last
	}
	if !now.Before(end) {
		return 0, false
	}
	return max(end.Sub(now), minWait), true
}

// busyUtilization is the share of the instances' time (at the arrival
// rate, in batches of the size at hand) above which the SLO batcher waits
// to form a larger batch (see steady): below 1 by a margin, since the
// request path shares the cores with the engine (kiln serve on a CPU) and
// the arrivals come in bursts; at most the utilization of single
// requests at light load (1,000 req/s of the MLP's 453us: 45%), which must
// run at once.
const busyUtilization = 0.5

// steadyUtilization is the utilization the batch the steady rule waits
// for keeps the instances at: lower than busyUtilization, so that the
// arrival bursts of Poisson traffic find room.
const steadyUtilization = 0.35

// steadyArrivals is how many arrivals the steady rule waits for before it
// applies (the gap estimates weigh about the latest 32), so that it
// starts with the load: waiting for satArrivals, as fill does, let the
// small batches of the first 512 build a backlog that the simulated
// sweep (TestSLOBatcherModerateLoad) never drained below the window.
const steadyArrivals = 32

// maxUtilization is the highest share of an instance's time the batches
// cut to the oldest request's budget may fill at the (estimated) arrival
// rate: closer to 1, a rate estimate a little low lets cuts shrink the
// capacity under heavy load, and the queue grows (tried on the simulated
// sweeps of sim_test.go: at 90% of capacity on one instance the P99 was
// 13.6ms with 0.8 and 12.5ms with 0.6, against 12.4ms without cuts,
// while with two instances cuts kept it under the 10ms objective).
const maxUtilization = 0.6

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
