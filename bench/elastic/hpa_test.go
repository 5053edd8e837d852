package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// chartHPA is the HPA of the chart's default values, rendered.
func chartHPA(t *testing.T) *HPA {
	t.Helper()
	ch, err := loadChart("../../deploy/helm/kiln")
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHPA(ch.HPA)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestChartConfig checks what the loop reads from the rendered chart.
func TestChartConfig(t *testing.T) {
	ch, err := loadChart("../../deploy/helm/kiln")
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHPA(ch.HPA)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("metric %s target %g replicas %d..%d up %s %v %s down %s %v %s preStop %s grace %s scrape %s policy %s slo %s",
		ch.Metric, h.Target, h.Min, h.Max, h.Up.Window, h.Up.Policies, h.Up.SelectPolicy, h.Down.Window, h.Down.Policies, h.Down.SelectPolicy,
		ch.PreStop, ch.Grace, ch.ScrapeInterval, ch.GatewayPolicy, ch.SLO)
	want := "metric kiln_inflight_requests target 8 replicas 2..10 up 0s [{Pods 4 1m0s} {Percent 100 1m0s}] Max down 5m0s [{Pods 1 40s}] Min preStop 5s grace 40s scrape 15s policy least slo 100ms"
	if got != want {
		t.Errorf("from the chart:\n got %s\nwant %s", got, want)
	}
	if ch.ServerArgs[0] != "serve" {
		t.Errorf("server args %v: want kiln serve's", ch.ServerArgs)
	}
	// the loop's own values file changes the target only
	lc, err := loadChart("../../deploy/helm/kiln", "values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lh, err := NewHPA(lc.HPA)
	if err != nil {
		t.Fatal(err)
	}
	if lh.Target != 2 || lh.Min != h.Min || lh.Max != h.Max || lh.Down.Window != h.Down.Window {
		t.Errorf("values.yaml: target %g, replicas %d..%d, down window %s: want target 2, the rest as the chart's", lh.Target, lh.Min, lh.Max, lh.Down.Window)
	}
	q := adapterQuery(ch.MetricsQuery, "kiln", []string{"kiln-server-0", "kiln-server-1"})
	if want := `sum(rate(kiln_request_duration_us{namespace="kiln",pod=~"kiln-server-0|kiln-server-1"}[1m])) by (pod) / 1e6`; q != want {
		t.Errorf("adapter query:\n got %s\nwant %s", q, want)
	}
	if got, want := scaleRangeWindows(q, 10), strings.Replace(q, "[1m]", "[6000ms]", 1); got != want {
		t.Errorf("scaled query:\n got %s\nwant %s", got, want)
	}
}

// TestHPA runs the HPA algorithm through sequences of syncs with the
// chart's behavior (target 8, 2..10 replicas, scale up at once by at most
// 4 pods or 100% per 60 s, scale down after a 300 s window by 1 pod per 40 s), as
// the Kubernetes documentation describes the controller.
func TestHPA(t *testing.T) {
	type sync struct {
		at      time.Duration // from the start
		current int
		values  []float64 // of pods p0, p1, ...; -1: no value for that pod
		pods    int       // pods of the target (0: len(values))
		want    int
		reason  string
	}
	cases := []struct {
		name  string
		syncs []sync
	}{
		{"within tolerance", []sync{{0, 2, []float64{8.6, 8.6}, 0, 2, "metric"}}},
		{"just outside tolerance", []sync{{0, 2, []float64{8.9, 8.9}, 0, 3, "metric"}}},
		{"up: ceil(current * metric / target)", []sync{{0, 2, []float64{16, 12}, 0, 4, "metric"}}},
		{"up: at most 4 pods or 100% (the larger) per 60 s", []sync{
			{0, 2, []float64{40, 40}, 0, 6, "scale-up policy"},
			{16 * time.Second, 6, []float64{40, 40, 40, 40, 40, 40}, 0, 6, "scale-up policy"},
			{59 * time.Second, 6, []float64{40, 40, 40, 40, 40, 40}, 0, 6, "scale-up policy"},
			{61 * time.Second, 6, []float64{40, 40, 40, 40, 40, 40}, 0, 10, "maxReplicas"},
		}},
		{"up: 100% per 60 s above 4 pods", []sync{
			{0, 6, []float64{40, 40, 40, 40, 40, 40}, 0, 10, "maxReplicas"},
		}},
		{"up: maxReplicas", []sync{{0, 8, []float64{16, 16, 16, 16, 16, 16, 16, 16}, 0, 10, "maxReplicas"}}},
		{"up: pods without a value count as 0", []sync{
			// (16+16+0+0)/4 = 8: within the tolerance, no change
			{0, 4, []float64{16, 16, -1, -1}, 0, 4, "metric"},
			// (24+24+0+0)/4 = 12: ceil(1.5 * 4) = 6
			{15 * time.Second, 4, []float64{24, 24, -1, -1}, 0, 6, "metric"},
		}},
		{"down: pods without a value count as the target", []sync{
			// (2+2+8+8)/4 = 5: ceil(0.625 * 4) = 3
			{0, 4, []float64{2, 2, -1, -1}, 0, 3, "metric"},
		}},
		{"down: stabilization window, then 1 pod per 40 s", []sync{
			{0, 2, []float64{16, 16}, 0, 4, "metric"},
			{60 * time.Second, 4, []float64{1, 1, 1, 1}, 0, 4, "stabilization window"},
			{299 * time.Second, 4, []float64{1, 1, 1, 1}, 0, 4, "stabilization window"},
			{301 * time.Second, 4, []float64{1, 1, 1, 1}, 0, 3, "scale-down policy"},
			{320 * time.Second, 3, []float64{1, 1, 1}, 0, 3, "scale-down policy"},
			{342 * time.Second, 3, []float64{1, 1, 1}, 0, 2, "minReplicas"},
		}},
		{"down: the window keeps the highest recommendation", []sync{
			{0, 4, []float64{12, 12, 12, 12}, 0, 6, "metric"},
			{100 * time.Second, 6, []float64{4, 4, 4, 4, 4, 4}, 0, 6, "stabilization window"},
			// the window's recommendations: 6 (t=0) and 3 (t=100): 6 until t=300
			{310 * time.Second, 6, []float64{4, 4, 4, 4, 4, 4}, 0, 5, "scale-down policy"},
		}},
		{"below minReplicas", []sync{{0, 1, []float64{1}, 0, 2, "below minReplicas"}}},
		{"above maxReplicas", []sync{{0, 12, []float64{1}, 12, 10, "above maxReplicas"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := chartHPA(t)
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i, s := range tc.syncs {
				n := s.pods
				if n == 0 {
					n = len(s.values)
				}
				var pods []string
				vals := map[string]float64{}
				for j := range n {
					p := fmt.Sprintf("p%d", j)
					pods = append(pods, p)
					if j < len(s.values) && s.values[j] >= 0 {
						vals[p] = s.values[j]
					}
				}
				d, err := h.Evaluate(t0.Add(s.at), s.current, pods, vals)
				if err != nil {
					t.Fatalf("sync %d: %v", i, err)
				}
				if d.Desired != s.want || d.Reason != s.reason {
					t.Errorf("sync %d at %s, %d replicas, values %v: %d (%s), want %d (%s)", i, s.at, s.current, s.values, d.Desired, d.Reason, s.want, s.reason)
				}
			}
		})
	}
}

func TestHPANoMetrics(t *testing.T) {
	h := chartHPA(t)
	if _, err := h.Evaluate(time.Now(), 2, []string{"a", "b"}, map[string]float64{"c": 1}); !errors.Is(err, ErrNoMetrics) {
		t.Errorf("no value for any pod: %v, want ErrNoMetrics", err)
	}
}

func TestNewHPARejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec autoscalingv2.HorizontalPodAutoscalerSpec
	}{
		{"no metric", autoscalingv2.HorizontalPodAutoscalerSpec{MaxReplicas: 3}},
		{"resource metric", autoscalingv2.HorizontalPodAutoscalerSpec{MaxReplicas: 3, Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType}}}},
	} {
		if _, err := NewHPA(tc.spec); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"60s:6,4m:30", "[{1m0s 6} {4m0s 30}]"},
		{"60s", "error"},
		{"x:3", "error"},
		{"10s:0", "error"},
	} {
		got := "error"
		if p, err := parsePhases(tc.in); err == nil {
			got = fmt.Sprint(p)
		}
		if got != tc.want {
			t.Errorf("phases %q: %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"250m", 25000}, {"0.5", 50000}, {"1", 100000}, {"0", 0}, {"", 0}, {"-1", -1}, {"abc", -1}, {"5m", 1000},
	} {
		got, err := parseCPU(tc.in)
		if err != nil {
			got = -1
		}
		if got != tc.want {
			t.Errorf("cpu %q: %d, want %d", tc.in, got, tc.want)
		}
	}
}
