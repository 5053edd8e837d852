package gateway

import (
	"bufio"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape reads g's /metrics page as served: "name{labels}" -> value.
func scrape(t *testing.T, g *Gateway) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	g.MetricsHandler("", false).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); i > 0 && err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// TestGatewayMetrics: the gateway's own metrics per backend and model:
// requests by code, latency histograms, retries by reason, ejections, and
// the requests it answered itself by reason.
func TestGatewayMetrics(t *testing.T) {
	type step struct {
		token string
		want  int
	}
	const sent = -1 // in want: the number of requests sent
	tests := []struct {
		name  string
		opts  Options
		modes [2]string // of backends a and b
		// untilA: first send requests (each answered 200) until a got
		// this many; the picks among backends are random
		untilA int
		steps  []step
		// the metrics, with A and B for the backends' names, * for both
		want map[string]float64
	}{
		{"answered", Options{}, [2]string{"ok", "ok"}, 0, []step{{"", 200}, {"", 200}, {"", 200}, {"", 200}},
			map[string]float64{`kiln_gateway_requests_total{backend="*",code="200",model="m"}`: 4,
				`kiln_gateway_request_duration_seconds_count{backend="*",model="m"}`: 4,
				`kiln_gateway_backend_ready{backend="A"}`:                            1, `kiln_gateway_outstanding_requests{backend="A"}`: 0}},
		// a 503 takes the model off a until the next poll (none here)
		{"refused and retried", Options{PollInterval: time.Hour}, [2]string{"503", "ok"}, 1, []step{{"", 200}, {"", 200}},
			map[string]float64{`kiln_gateway_retries_total{backend="A",model="m",reason="refused"}`: 1,
				`kiln_gateway_requests_total{backend="A",code="503",model="m"}`: 1,
				`kiln_gateway_requests_total{backend="B",code="200",model="m"}`: sent}},
		{"lost, retried and ejected", Options{FailureThreshold: 2, EjectTime: time.Hour}, [2]string{"drop", "ok"}, 2,
			[]step{{"", 200}, {"", 200}, {"", 200}, {"", 200}},
			map[string]float64{`kiln_gateway_retries_total{backend="A",model="m",reason="lost"}`: 2,
				`kiln_gateway_ejections_total{backend="A"}`: 1, `kiln_gateway_backend_ready{backend="A"}`: 0,
				`kiln_gateway_requests_total{backend="B",code="200",model="m"}`: sent}},
		// every attempt that may be retried counts, the last one too
		{"queues full", Options{}, [2]string{"429", "429"}, 0, []step{{"", 429}},
			map[string]float64{`kiln_gateway_retries_total{backend="*",model="m",reason="full"}`: 2,
				`kiln_gateway_requests_total{backend="*",code="429",model="m"}`: 2, `kiln_gateway_rejected_total{reason="overloaded"}`: 1}},
		{"admission", Options{Clients: []Client{{Name: "alice", Token: "t1", Rate: 0.001, Burst: 1}}}, [2]string{"ok", "ok"}, 0,
			[]step{{"", 401}, {"t1", 200}, {"t1", 429}, {"t1", 429}},
			map[string]float64{`kiln_gateway_rejected_total{reason="unauthenticated"}`: 1, `kiln_gateway_rejected_total{reason="rate_limited"}`: 2,
				`kiln_gateway_requests_total{backend="*",code="200",model="m"}`: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newFake(t, "a", "m"), newFake(t, "b", "m")
			g, url := newTestGateway(t, tt.opts, a, b)
			a.mode.Store(tt.modes[0])
			b.mode.Store(tt.modes[1])
			n := 0
			for ; a.count("m") < tt.untilA; n++ {
				if n == 200 {
					t.Fatalf("a got %d requests of %d", a.count("m"), n)
				}
				if got := post(t, url+"/v2/models/m/infer", "", nil, []byte(inferBody)); got.code != 200 {
					t.Fatalf("request %d: %+v", n, got)
				}
			}
			for i, s := range tt.steps {
				if got := post(t, url+"/v2/models/m/infer", s.token, nil, []byte(inferBody)); got.code != s.want {
					t.Fatalf("request %d: %+v, want %d", n+i, got, s.want)
				}
			}
			n += len(tt.steps)
			m := scrape(t, g)
			for k, want := range tt.want {
				if want == sent {
					want = float64(n)
				}
				var got float64
				if strings.Contains(k, `backend="*"`) {
					got = m[strings.Replace(k, "*", a.addr(), 1)] + m[strings.Replace(k, "*", b.addr(), 1)]
				} else {
					got = m[strings.NewReplacer(`"A"`, fmt.Sprintf("%q", a.addr()), `"B"`, fmt.Sprintf("%q", b.addr())).Replace(k)]
				}
				if got != want {
					t.Errorf("%s = %v, want %v", k, got, want)
				}
			}
		})
	}
}

// TestGatewaySlowStart: a backend that just turned ready gets a share of
// the requests that grows with its age, from a tenth of its full share to
// all of it at the end of the slow start; an old one gets its full share.
func TestGatewaySlowStart(t *testing.T) {
	const slow = 10 * time.Second
	tests := []struct {
		age  time.Duration // of backend b; a is old
		want float64       // b's share of the picks (least outstanding, ties at random)
	}{
		{0, 0.05}, // weight 0.1: among the candidates a tenth of the time, then picked half of it
		{slow / 4, 0.125},
		{slow / 2, 0.25},
		{slow, 0.5},
		{time.Hour, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.age.String(), func(t *testing.T) {
			g, err := New(Options{SlowStart: slow})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			now := time.Now()
			for name, age := range map[string]time.Duration{"a:1": time.Hour, "b:1": tt.age} {
				be := newBackend(Endpoint{HTTP: name}, now)
				be.ready, be.healthySince = true, now.Add(-age)
				be.models = map[string]map[string]bool{"m": {"1": true}}
				g.backends[name] = be
			}
			g.relist()
			const n = 20000
			got := 0
			for range n {
				be, err := g.pick(route{model: "m"}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if be.HTTP == "b:1" {
					got++
				}
			}
			// 20,000 picks: the share's standard deviation is at most 0.0036
			if share := float64(got) / n; share < tt.want-0.02 || share > tt.want+0.02 {
				t.Errorf("b at age %v: %.3f of the picks, want %.3f", tt.age, share, tt.want)
			}
		})
	}
}
