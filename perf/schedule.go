package perf

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// ErrConfig reports a bad option: a range, distribution, protocol or
// input that cannot be used.
var ErrConfig = errors.New("perf: bad option")

// Range is perf_analyzer's START:END:STEP: the values START, START+STEP,
// ... up to END included.
type Range struct {
	Start, End, Step float64
}

// ParseRange parses "START", "START:END" (step 1) or "START:END:STEP".
// Values must be positive, END >= START and STEP > 0.
func ParseRange(s string) (Range, error) {
	parts := strings.Split(s, ":")
	if len(parts) > 3 || s == "" {
		return Range{}, fmt.Errorf("%w: range %q: want START[:END[:STEP]]", ErrConfig, s)
	}
	v := make([]float64, len(parts))
	for i, p := range parts {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
			return Range{}, fmt.Errorf("%w: range %q: %q is not a positive number", ErrConfig, s, p)
		}
		v[i] = f
	}
	r := Range{Start: v[0], End: v[0], Step: 1}
	if len(v) > 1 {
		r.End = v[1]
	}
	if len(v) > 2 {
		r.Step = v[2]
	}
	if r.End < r.Start {
		return Range{}, fmt.Errorf("%w: range %q: END %g is below START %g", ErrConfig, s, r.End, r.Start)
	}
	if n := (r.End-r.Start)/r.Step + 1; n > 10000 {
		return Range{}, fmt.Errorf("%w: range %q has %.0f steps (at most 10000)", ErrConfig, s, n)
	}
	return r, nil
}

// Values lists the range's values.
func (r Range) Values() []float64 {
	var out []float64
	for i := 0; ; i++ {
		v := r.Start + float64(i)*r.Step
		if v > r.End*(1+1e-9) {
			return out
		}
		out = append(out, v)
	}
}

// String is the range as ParseRange reads it.
func (r Range) String() string {
	return fmt.Sprintf("%g:%g:%g", r.Start, r.End, r.Step)
}

// Distribution is how requests of the request-rate mode are spaced.
type Distribution string

// The distributions: constant spacing 1/rate, or Poisson arrivals
// (exponentially distributed gaps of mean 1/rate).
const (
	Constant Distribution = "constant"
	Poisson  Distribution = "poisson"
)

// ParseDistribution checks a --request-distribution value.
func ParseDistribution(s string) (Distribution, error) {
	switch d := Distribution(s); d {
	case Constant, Poisson:
		return d, nil
	}
	return "", fmt.Errorf("%w: request distribution %q: want constant or poisson", ErrConfig, s)
}

// Schedule gives the gaps between the send times of a request-rate run.
type Schedule struct {
	mean time.Duration
	dist Distribution
	rng  *rand.Rand
}

// NewSchedule returns the schedule of rate requests per second with the
// given distribution; seed makes a Poisson schedule repeatable.
func NewSchedule(rate float64, dist Distribution, seed uint64) *Schedule {
	return &Schedule{
		mean: time.Duration(float64(time.Second) / rate),
		dist: dist,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// Next returns the gap before the next request.
func (s *Schedule) Next() time.Duration {
	if s.dist == Poisson {
		return time.Duration(s.rng.ExpFloat64() * float64(s.mean))
	}
	return s.mean
}
