package perf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func durations(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name string
		lat  []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", durations(7), 99, 7 * time.Millisecond},
		{"median of odd", durations(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"median of even is the lower", durations(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p95 of 1..100", durations(hundred...), 95, 95 * time.Millisecond},
		{"p99 of 1..100", durations(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the max", durations(hundred...), 100, 100 * time.Millisecond},
		{"p90 of 10 values", durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"small p is the min", durations(3, 4, 5), 0.1, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.lat, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %g) = %v, want %v", tt.lat, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize(durations(5, 1, 4, 2, 3))
	want := Latencies{Count: 5, Min: time.Millisecond, Max: 5 * time.Millisecond, Avg: 3 * time.Millisecond,
		P50: 3 * time.Millisecond, P90: 5 * time.Millisecond, P95: 5 * time.Millisecond, P99: 5 * time.Millisecond}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if (Summarize(nil) != Latencies{}) {
		t.Errorf("Summarize(nil) = %+v", Summarize(nil))
	}
}

func TestStable(t *testing.T) {
	w := func(tput float64, p95ms int) Window {
		return Window{Throughput: tput, P95: time.Duration(p95ms) * time.Millisecond}
	}
	tests := []struct {
		name string
		ws   []Window
		pct  float64
		want bool
	}{
		{"too few windows", []Window{w(100, 10), w(100, 10)}, 10, false},
		{"three equal", []Window{w(100, 10), w(100, 10), w(100, 10)}, 10, true},
		{"within 10%", []Window{w(95, 10), w(100, 10), w(105, 11)}, 10, true},
		{"throughput off", []Window{w(80, 10), w(100, 10), w(120, 10)}, 10, false},
		{"p95 off", []Window{w(100, 10), w(100, 10), w(100, 14)}, 10, false},
		{"off at 5%, within at 25%", []Window{w(100, 10), w(100, 10), w(100, 12)}, 25, true},
		{"only the last three count", []Window{w(10, 90), w(100, 10), w(100, 10), w(100, 10)}, 10, true},
		{"an unstable last window", []Window{w(100, 10), w(100, 10), w(100, 10), w(50, 10)}, 10, false},
		{"no requests at all", []Window{w(0, 0), w(0, 0), w(0, 0)}, 10, true},
		{"requests starting", []Window{w(0, 0), w(0, 0), w(10, 1)}, 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Stable(tt.ws, tt.pct); got != tt.want {
				t.Errorf("Stable(%v, %g) = %v, want %v", tt.ws, tt.pct, got, tt.want)
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		want    []float64
		wantErr string
	}{
		{"4", []float64{4}, ""},
		{"1:4", []float64{1, 2, 3, 4}, ""},
		{"1:8:2", []float64{1, 3, 5, 7}, ""},
		{"2:8:3", []float64{2, 5, 8}, ""},
		{"100:300:100", []float64{100, 200, 300}, ""},
		{"0.5:1.5:0.5", []float64{0.5, 1, 1.5}, ""},
		{"", nil, "want START[:END[:STEP]]"},
		{"1:2:3:4", nil, "want START[:END[:STEP]]"},
		{"a:4", nil, `"a" is not a positive number`},
		{"0:4", nil, `"0" is not a positive number`},
		{"1:4:-1", nil, `"-1" is not a positive number`},
		{"8:4", nil, "END 4 is below START 8"},
		{"1:1e9", nil, "steps (at most 10000)"},
		{"NaN", nil, "not a positive number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRange(tt.in)
			if tt.wantErr != "" {
				if err == nil || !contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRange(%q) = %v, %v; want an error with %q", tt.in, r, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := r.Values()
			if len(got) != len(tt.want) {
				t.Fatalf("ParseRange(%q).Values() = %v, want %v", tt.in, got, tt.want)
			}
			for i := range got {
				if math.Abs(got[i]-tt.want[i]) > 1e-9 {
					t.Fatalf("ParseRange(%q).Values() = %v, want %v", tt.in, got, tt.want)
				}
			}
		})
	}
}

func TestSchedule(t *testing.T) {
	tests := []struct {
		name string
		rate float64
		dist Distribution
	}{
		{"constant 100/s", 100, Constant},
		{"poisson 100/s", 100, Poisson},
		{"poisson 2500/s", 2500, Poisson},
		{"poisson 0.5/s", 0.5, Poisson},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 200000
			s := NewSchedule(tt.rate, tt.dist, 42)
			mean := 1 / tt.rate
			var sum, sumSq float64
			distinct := map[time.Duration]bool{}
			for range n {
				g := s.Next()
				if g < 0 {
					t.Fatalf("negative gap %v", g)
				}
				x := g.Seconds()
				sum += x
				sumSq += x * x
				if len(distinct) < 3 {
					distinct[g] = true
				}
			}
			gotMean := sum / n
			if math.Abs(gotMean-mean)/mean > 0.01 {
				t.Errorf("mean gap %.6gs, want %.6gs within 1%%", gotMean, mean)
			}
			// an exponential distribution's standard deviation is its mean;
			// a constant schedule has none
			sd := math.Sqrt(max(sumSq/n-gotMean*gotMean, 0))
			switch tt.dist {
			case Poisson:
				if math.Abs(sd-mean)/mean > 0.02 {
					t.Errorf("standard deviation %.6gs, want the mean %.6gs within 2%%", sd, mean)
				}
			case Constant:
				if len(distinct) != 1 {
					t.Errorf("constant schedule with gaps %v", distinct)
				}
			}
		})
	}
	if _, err := ParseDistribution("uniform"); err == nil || !contains(err.Error(), "want constant or poisson") {
		t.Errorf("ParseDistribution(uniform): %v", err)
	}
}

func contains(s, sub string) bool {
	return strings.Contains(s, sub)
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&RequestError{"HTTP 429", errors.New("Too Many Requests")}, "HTTP 429"},
		{status.Error(codes.ResourceExhausted, "queue full"), "gRPC RESOURCE_EXHAUSTED"},
		{status.Error(codes.InvalidArgument, "bad"), "gRPC INVALID_ARGUMENT"},
		{status.Error(codes.Unavailable, "down"), "gRPC UNAVAILABLE"},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), "timeout"},
		{errors.New("connection reset"), "connection"},
	}
	for _, tt := range tests {
		if got := ErrorKind(tt.err); got != tt.want {
			t.Errorf("ErrorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
