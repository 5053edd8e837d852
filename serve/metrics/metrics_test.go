package metrics

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

var (
	_ serve.Observer       = (*Metrics)(nil)
	_ serve.LoadObserver   = (*Metrics)(nil)
	_ serve.SwitchObserver = (*Metrics)(nil)
)

type fixedPending map[[2]string]int

func (f fixedPending) Pending() map[[2]string]int { return f }

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestMetricsNames(t *testing.T) {
	m := New(fixedPending{{"m", "1"}: 3})
	m.RequestDone("m", "1", 2, "", serve.Times{Total: 3 * time.Millisecond, Queue: time.Millisecond,
		ComputeInput: 100 * time.Microsecond, ComputeInfer: 2 * time.Millisecond, ComputeOutput: 1500 * time.Nanosecond})
	m.RequestDone("m", "1", 1, "REJECTED", serve.Times{Total: time.Millisecond})
	m.Executed("m", "1", 1, 2, 2*time.Millisecond)
	m.ModelLoaded("m", 50*time.Millisecond)
	m.ContextSwitched("m", "1")
	m.ContextSwitched("m", "1")
	out := scrape(t, m.Handler())
	for _, want := range []string{
		`nv_inference_request_success{model="m",version="1"} 1`,
		`nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 1`,
		`nv_inference_count{model="m",version="1"} 2`,
		`nv_inference_exec_count{model="m",version="1"} 1`,
		`nv_inference_pending_request_count{model="m",version="1"} 3`,
		`nv_inference_request_duration_us{model="m",version="1"} 3000`,
		`nv_inference_queue_duration_us{model="m",version="1"} 1000`,
		`nv_inference_compute_infer_duration_us{model="m",version="1"} 2000`,
		`nv_inference_compute_input_duration_us{model="m",version="1"} 100`,
		`nv_inference_compute_output_duration_us{model="m",version="1"} 1.5`,
		`kiln_request_duration_seconds_count{model="m",version="1"} 1`,
		`kiln_queue_duration_seconds_count{model="m",version="1"} 1`,
		`kiln_batch_size_bucket{model="m",version="1",le="2"} 1`,
		`kiln_model_load_duration_seconds_count{model="m"} 1`,
		`kiln_inference_exec_context_switch_count{model="m",version="1"} 2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestMetricsFromServer(t *testing.T) {
	m := New(nil)
	s := serve.New(serve.Options{Observer: m})
	m.SetPending(s)
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	for range 3 {
		if _, err := s.Infer(context.Background(), &serve.InferRequest{Model: "tinycnn",
			Inputs: map[string]*tensor.Tensor{"image": examples.TinyCNNInput(2)}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Infer(context.Background(), &serve.InferRequest{Model: "tinycnn", Inputs: map[string]*tensor.Tensor{"x": examples.TinyCNNInput(1)}})
	out := scrape(t, m.Handler())
	for _, want := range []string{
		`nv_inference_request_success{model="tinycnn",version="1"} 3`,
		`nv_inference_count{model="tinycnn",version="1"} 6`,
		`nv_inference_exec_count{model="tinycnn",version="1"} 3`,
		`nv_inference_request_failure{model="tinycnn",reason="OTHER",version="1"} 1`,
		`nv_inference_pending_request_count{model="tinycnn",version="1"} 0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	st, err := s.ModelStats("tinycnn", "")
	if err != nil || len(st) != 1 || st[0].InferenceCount != 6 || st[0].ExecutionCount != 3 || st[0].FailCount != 1 {
		b, _ := json.Marshal(st)
		t.Errorf("stats %s, %v", b, err)
	}
}

// BenchmarkRequestDone: what a request's metrics cost the server (the
// children of a model version found once, not by their labels each time).
func BenchmarkRequestDone(b *testing.B) {
	m := New(nil)
	t := serve.Times{Total: time.Millisecond, Queue: 10 * time.Microsecond, ComputeInfer: 900 * time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		m.Executed("tinycnn", "1", 1, 1, t.ComputeInfer)
		m.RequestDone("tinycnn", "1", 1, "", t)
	}
}
