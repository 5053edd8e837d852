package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/serve"
)

// servedMetric is kiln_request_duration_us{model}: the cumulative time of
// inference requests from their arrival at the HTTP, gRPC or WebSocket
// edge to their response written (serve.EdgeObserver). Its rate over a
// window is the mean number of requests in flight (Little's law), the
// autoscaling metric kiln_inflight_requests.
type servedMetric struct {
	vec  *prometheus.CounterVec
	kids sync.Map // model -> prometheus.Counter
}

func newServedMetric() *servedMetric {
	return &servedMetric{vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_request_duration_us",
		Help: "Cumulative time of inference requests from their arrival (HTTP, gRPC or WebSocket) to their response written, in microseconds"},
		[]string{"model"})}
}

// RequestServed records an inference request's whole time in the server
// (serve.EdgeObserver).
func (m *Metrics) RequestServed(model string, took time.Duration) {
	c, ok := m.served.kids.Load(model)
	if !ok {
		c, _ = m.served.kids.LoadOrStore(model, m.served.vec.WithLabelValues(model))
	}
	c.(prometheus.Counter).Add(float64(took.Nanoseconds()) / 1e3)
}

var _ serve.EdgeObserver = (*Metrics)(nil)
