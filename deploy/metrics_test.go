package deploy

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/metrics"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

type fakeGPU struct{}

func (fakeGPU) GPUs() ([]metrics.GPUStat, error) {
	return []metrics.GPUStat{{UUID: "GPU-0", Utilization: 0.5, MemoryTotal: 80 << 30, MemoryUsed: 1 << 30}}, nil
}

var exported = sync.OnceValues(func() (map[string]bool, error) {
	// a real server with kiln's metrics (and GPU metrics from a stand-in
	// GPU), after a successful and a failed request
	m := metrics.New(nil)
	m.AddGPU(fakeGPU{}, nil)
	s := serve.New(serve.Options{Observer: m})
	m.SetPending(s)
	defer s.Shutdown(context.Background())
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		return nil, err
	}
	if err := s.Add(rm); err != nil {
		return nil, err
	}
	if _, err := s.Infer(context.Background(), &serve.InferRequest{Model: "tinycnn",
		Inputs: map[string]*tensor.Tensor{"image": examples.TinyCNNInput(2)}}); err != nil {
		return nil, err
	}
	s.Infer(context.Background(), &serve.InferRequest{Model: "tinycnn", Inputs: map[string]*tensor.Tensor{"x": examples.TinyCNNInput(1)}})
	// as the HTTP, gRPC and WebSocket edges report a request's whole time
	s.Served("tinycnn", time.Now().Add(-time.Millisecond))
	m.ContextSwitched("tinycnn", "1") // one instance here: no switch happens by itself
	m.ModelLoaded("tinycnn", time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	names := map[string]bool{"up": true} // Prometheus's own, per target
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			if f[3] == "histogram" {
				for _, sfx := range []string{"_bucket", "_sum", "_count"} {
					names[f[2]+sfx] = true
				}
			}
		}
	}
	return names, nil
})

// metricName finds the metric names in PromQL: kiln's prefixes, and up.
var metricName = regexp.MustCompile(`\b(?:nv|kiln)_[a-z0-9_]+\b|\bup\b`)

func checkMetricNames(t *testing.T, where, query string) {
	t.Helper()
	names, err := exported()
	if err != nil {
		t.Fatal(err)
	}
	found := metricName.FindAllString(query, -1)
	if len(found) == 0 {
		t.Errorf("%s: the query names no kiln metric: %s", where, query)
	}
	for _, n := range found {
		if !names[n] {
			t.Errorf("%s: kiln exports no metric %s (query %s)", where, n, strings.TrimSpace(query))
		}
	}
}

// TestDashboard checks the Grafana dashboard: it parses, every query names
// metrics kiln exports, and it shows what an operator looks at, per model.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("helm/kiln/dashboards/kiln.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if d.UID == "" || !slices.Contains(vars, "model") || !slices.Contains(vars, "namespace") {
		t.Errorf("dashboard uid %q, variables %v: want a uid and model and namespace variables", d.UID, vars)
	}
	all := ""
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkMetricNames(t, "panel "+p.Title, tg.Expr)
			all += tg.Expr + "\n"
		}
	}
	for _, want := range []struct{ what, metric string }{
		{"QPS", "nv_inference_request_success"},
		{"P50/P99", "kiln_request_duration_seconds_bucket"},
		{"queue time", "nv_inference_queue_duration_us"},
		{"batch size", "kiln_batch_size_sum"},
		{"GPU utilization", "nv_gpu_utilization"},
		{"GPU memory", "nv_gpu_memory_used_bytes"},
		{"execution-context switches", "kiln_inference_exec_context_switch_count"},
		{"per model", `model=~"$model"`},
	} {
		if !strings.Contains(all, want.metric) {
			t.Errorf("the dashboard does not show %s (no query on %s)", want.what, want.metric)
		}
	}
}
