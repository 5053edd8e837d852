package tactic

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kilnai/kiln/device"
)

// ErrNoCandidate is returned by Choose when none of a layer's candidates
// ran (each one's reason is in the message).
var ErrNoCandidate = errors.New("tactic: no candidate ran")

// Layer is one layer with a choice to make, as Choose sees it: every
// device's (the CPU's kernels with tactics, Select; the GPU's library
// algorithms and kiln kernels, device/cuda/gpuexec's tuner).
type Layer struct {
	// Name and Op name the layer in errors: node name and operator.
	Name, Op string
	// Sig is the layer's signature: with the device fingerprint, the
	// candidate's name and the timer's name, the key of a time in the
	// timing cache.
	Sig string
	// Candidates are the names of the ways to run the layer (tactics),
	// the default first: ties keep the earlier, and Rule.MinGain compares
	// with the first. A name given twice is one candidate (measured once,
	// at its first place).
	Candidates []string
}

// Timer measures the candidates of one layer: how a device runs each one
// and times it. The CPU's (Select) runs the kernel on the CPU and takes
// the fastest of its wall-clock runs (CPUTimer); the GPU's
// (device/cuda/gpuexec) replays the layer's calls as a CUDA graph between
// two CUDA events and takes the median.
type Timer interface {
	// Name is the timer the timing cache files its times under
	// (Cache.LookupTimer): CPUTimer for the CPU's, "" for the GPU's.
	Name() string
	// Time measures the candidates of indices todo (into
	// Layer.Candidates, ascending) and returns one Result per entry of
	// todo. known holds, per candidate, the time read from the cache, zero
	// for the others (those in todo among them): a timer may cut short a
	// candidate far slower than the fastest before it (the GPU's screen).
	// A candidate that does not run is a Result with Err: Choose skips it.
	// An error ends the choice (the CPU's tactics must all run).
	Time(ctx context.Context, todo []int, known []time.Duration) ([]Result, error)
}

// Result is a Timer's measurement of one candidate.
type Result struct {
	// Time is its time (the timer's: the fastest run, the median...).
	Time time.Duration
	// Scratch is the peak scratch memory it used, in bytes, when
	// HasScratch.
	Scratch    int64
	HasScratch bool
	// Err, when set, says why the candidate did not run: it is not
	// chosen, and nothing is stored in the cache.
	Err error
}

// Rule is how Choose picks among the measured candidates: the fastest
// that fits the workspace, ties to the earlier (the default first); then
// the default instead when the fastest is not MinGain faster.
type Rule struct {
	// MinGain, when positive, is how much faster than the default another
	// candidate must be to be chosen (Keeps).
	MinGain float64
	// Workspace, when positive, bounds the scratch memory of a chosen
	// candidate: the timer must measure it (Result.HasScratch), the cache
	// keeps it, and a cached time without its scratch is measured again.
	Workspace int64
	// Progress, when set, is called for each candidate once its time is
	// known: first those read from the cache (Cached, in candidate order),
	// then those measured, after the timer returns (in order; not those
	// that failed).
	Progress func(i int, d time.Duration, cached bool)
}

// Keeps reports whether a choice of time t is kept against a default of
// time def: t is not slower than def by more than the margin minGain
// (0.05: 5%): t*(1+minGain) <= def. The CPU applies it per layer
// (Rule.MinGain), the GPU to the whole network replayed with its choices
// and with the libraries' first ones (margin 0).
func Keeps(t, def time.Duration, minGain float64) bool {
	return float64(t)*(1+minGain) <= float64(def)
}

// Choose picks one of a layer's candidates on the device with fingerprint
// fp: it reads the times it can from cache (filed under Key(fp), the
// layer's signature, the candidate's name and the timer's name; cache may
// be nil: nothing read or stored), has timer measure the others in one
// call, stores their times (and scratch) in cache, and applies rule: the
// fastest candidate that ran and fits Rule.Workspace, the earlier on a
// tie; the default (the first) instead if it ran, fits, and the fastest is
// not Rule.MinGain faster. Candidates that failed are skipped, with their
// reasons in Choice.Failed. The error wraps ErrNoCandidate when none ran,
// ErrWorkspace when none that ran fits, or is the timer's.
func Choose(ctx context.Context, fp device.Fingerprint, cache *Cache, l Layer, timer Timer, rule Rule) (Choice, error) {
	if len(l.Candidates) == 0 {
		return Choice{}, fmt.Errorf("%w: node %q (%s) has no candidates", ErrNoCandidate, l.Name, l.Op)
	}
	c := Choice{Default: l.Candidates[0], Index: -1, Cached: true, Times: make(map[string]time.Duration, len(l.Candidates))}
	limit := rule.Workspace > 0
	if limit {
		c.Scratch = map[string]int64{}
	}
	progress := func(i int, d time.Duration, cached bool) {
		if rule.Progress != nil {
			rule.Progress(i, d, cached)
		}
	}
	known := make([]time.Duration, len(l.Candidates))
	var todo []int
	for i, t := range l.Candidates {
		if slices.Contains(l.Candidates[:i], t) { // given twice: one candidate
			continue
		}
		if cache != nil {
			if d, ok := cache.LookupTimer(fp, l.Sig, t, timer.Name()); ok {
				if limit {
					b, ok := cache.LookupScratchTimer(fp, l.Sig, t, timer.Name())
					if !ok {
						todo = append(todo, i)
						continue
					}
					c.Scratch[t] = b
				}
				c.Times[t], known[i] = d, d
				progress(i, d, true)
				continue
			}
		}
		todo = append(todo, i)
	}
	if len(todo) > 0 {
		c.Cached = false
		res, err := timer.Time(ctx, todo, known)
		if err != nil {
			return Choice{}, err
		}
		if len(res) != len(todo) {
			return Choice{}, fmt.Errorf("tactic: node %q (%s): the timer returned %d results for %d candidates", l.Name, l.Op, len(res), len(todo))
		}
		for k, i := range todo {
			t, r := l.Candidates[i], res[k]
			if r.Err != nil {
				if c.Failed == nil {
					c.Failed = map[string]error{}
				}
				c.Failed[t] = r.Err
				continue
			}
			d := max(r.Time, 1)
			c.Times[t] = d
			c.Measured++
			if cache != nil {
				cache.StoreTimer(fp, l.Sig, t, timer.Name(), d)
			}
			if r.HasScratch {
				if c.Scratch == nil {
					c.Scratch = map[string]int64{}
				}
				c.Scratch[t] = r.Scratch
				if cache != nil {
					cache.StoreScratchTimer(fp, l.Sig, t, timer.Name(), r.Scratch)
				}
			}
			progress(i, d, false)
		}
	}
	// The fastest that fits the workspace; on a tie the earlier (the
	// default first).
	fits := func(t string) bool { return !limit || c.Scratch[t] <= rule.Workspace }
	for i, t := range l.Candidates {
		if d, ok := c.Times[t]; ok && fits(t) && (c.Index < 0 || d < c.Time) {
			c.Index, c.Tactic, c.Time = i, t, d
		}
	}
	if c.Index < 0 {
		if len(c.Times) == 0 {
			var why []string
			said := map[string]bool{}
			for _, t := range l.Candidates {
				if err, ok := c.Failed[t]; ok && !said[t] {
					said[t] = true
					why = append(why, fmt.Sprintf("%s: %v", t, err))
				}
			}
			return Choice{}, fmt.Errorf("%w: node %q (%s): %s", ErrNoCandidate, l.Name, l.Op, strings.Join(why, "; "))
		}
		least := ""
		for _, t := range l.Candidates {
			if _, ok := c.Times[t]; ok && (least == "" || c.Scratch[t] < c.Scratch[least]) {
				least = t
			}
		}
		return Choice{}, fmt.Errorf("%w: node %q (%s): no tactic fits the workspace of %d bytes (the smallest, %q, needs %d)", ErrWorkspace, l.Name, l.Op, rule.Workspace, least, c.Scratch[least])
	}
	if def, ok := c.Times[c.Default]; ok && rule.MinGain > 0 && fits(c.Default) && !Keeps(c.Time, def, rule.MinGain) {
		c.Index, c.Tactic, c.Time = 0, c.Default, def
	}
	return c, nil
}
