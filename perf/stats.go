package perf

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted, by the
// nearest-rank method: the smallest value that at least p percent of the
// values do not exceed. It returns 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Latencies summarizes a set of request latencies.
type Latencies struct {
	Count int           `json:"count"`
	Min   time.Duration `json:"min_ns"`
	Max   time.Duration `json:"max_ns"`
	Avg   time.Duration `json:"avg_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P95   time.Duration `json:"p95_ns"`
	P99   time.Duration `json:"p99_ns"`
}

// Summarize sorts lat in place and returns its summary.
func Summarize(lat []time.Duration) Latencies {
	if len(lat) == 0 {
		return Latencies{}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	return Latencies{
		Count: len(lat), Min: lat[0], Max: lat[len(lat)-1], Avg: sum / time.Duration(len(lat)),
		P50: Percentile(lat, 50), P90: Percentile(lat, 90), P95: Percentile(lat, 95), P99: Percentile(lat, 99),
	}
}

// StableWindows is the number of consecutive windows whose throughput and
// p95 latency must agree for a measurement to be stable.
const StableWindows = 3

// Stable reports whether the last StableWindows windows agree: each one's
// throughput and p95 latency are within pct percent of the average of
// those windows. Windows without any value (throughput 0) are stable only
// when all of them are 0.
func Stable(ws []Window, pct float64) bool {
	if len(ws) < StableWindows {
		return false
	}
	last := ws[len(ws)-StableWindows:]
	within := func(v func(Window) float64) bool {
		avg := 0.0
		for _, w := range last {
			avg += v(w)
		}
		avg /= float64(len(last))
		for _, w := range last {
			if math.Abs(v(w)-avg) > pct/100*avg {
				return false
			}
		}
		return true
	}
	return within(func(w Window) float64 { return w.Throughput }) &&
		within(func(w Window) float64 { return float64(w.P95) })
}
