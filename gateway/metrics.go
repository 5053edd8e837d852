package gateway

import (
	"crypto/subtle"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are a gateway's own Prometheus metrics, in a registry of its own.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec   // backend, model, code
	retries     *prometheus.CounterVec   // backend, model, reason
	ejections   *prometheus.CounterVec   // backend
	latency     *prometheus.HistogramVec // backend, model
	rejected    *prometheus.CounterVec   // reason
	outstanding *prometheus.Desc
	backends    *prometheus.Desc

	// the children of requests and latency for the label values seen, so
	// that a request finds its counter and histogram without hashing its
	// labels into the vectors (label values come from backends and models
	// that exist, and status codes: a bounded set)
	childMu  sync.RWMutex
	reqKids  map[[3]string]prometheus.Counter
	histKids map[[2]string]prometheus.Observer
}

// request counts a request answered by backend for model with code.
func (m *Metrics) request(backend, model, code string) {
	k := [3]string{backend, model, code}
	m.childMu.RLock()
	c := m.reqKids[k]
	m.childMu.RUnlock()
	if c == nil {
		c = m.requests.WithLabelValues(backend, model, code)
		m.childMu.Lock()
		m.reqKids[k] = c
		m.childMu.Unlock()
	}
	c.Inc()
}

// observe records the duration of a request answered by backend for model.
func (m *Metrics) observe(backend, model string, d time.Duration) {
	k := [2]string{backend, model}
	m.childMu.RLock()
	o := m.histKids[k]
	m.childMu.RUnlock()
	if o == nil {
		o = m.latency.WithLabelValues(backend, model)
		m.childMu.Lock()
		m.histKids[k] = o
		m.childMu.Unlock()
	}
	o.Observe(d.Seconds())
}

// statusCode is an HTTP status as the label of a metric.
func statusCode(code int) string {
	switch code {
	case http.StatusOK:
		return "200"
	case http.StatusBadRequest:
		return "400"
	case http.StatusNotFound:
		return "404"
	case http.StatusTooManyRequests:
		return "429"
	case http.StatusInternalServerError:
		return "500"
	case http.StatusServiceUnavailable:
		return "503"
	}
	return strconv.Itoa(code)
}

func newMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_gateway_requests_total",
			Help: "Requests answered through a backend, by backend, model and status (HTTP status or gRPC code)"},
			[]string{"backend", "model", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_gateway_retries_total",
			Help: "Attempts that failed in a way that allows a retry (unreached, refused, lost, full), by the backend that failed, model and reason: the request is tried on another backend while one is left and the retry budget allows"},
			[]string{"backend", "model", "reason"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_gateway_ejections_total",
			Help: "Backends ejected after failures"}, []string{"backend"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kiln_gateway_request_duration_seconds",
			Help:    "Time from sending a request to a backend to the end of its answer, by backend and model",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"backend", "model"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_gateway_rejected_total",
			Help: "Requests the gateway answered itself without a backend's answer, by reason"}, []string{"reason"}),
		outstanding: prometheus.NewDesc("kiln_gateway_outstanding_requests", "Requests in flight, by backend", []string{"backend"}, nil),
		backends:    prometheus.NewDesc("kiln_gateway_backend_ready", "1 when the backend is ready and not ejected", []string{"backend"}, nil),
		reqKids:     map[[3]string]prometheus.Counter{},
		histKids:    map[[2]string]prometheus.Observer{},
	}
	m.reg.MustRegister(m.requests, m.retries, m.ejections, m.latency, m.rejected)
	return m
}

type gatewayCollector struct{ g *Gateway }

func (c gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.g.metrics.outstanding
	ch <- c.g.metrics.backends
}

func (c gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.g.Backends() {
		ch <- prometheus.MustNewConstMetric(c.g.metrics.outstanding, prometheus.GaugeValue, float64(s.Outstanding), s.HTTP)
		r := 0.0
		if s.Ready && !s.Ejected {
			r = 1
		}
		ch <- prometheus.MustNewConstMetric(c.g.metrics.backends, prometheus.GaugeValue, r, s.HTTP)
	}
}

func (m *Metrics) watch(g *Gateway) { m.reg.MustRegister(gatewayCollector{g}) }

// Registry is the gateway's metrics registry.
func (g *Gateway) Registry() *prometheus.Registry { return g.metrics.reg }

// MetricsHandler serves the gateway's metrics (GET /metrics) and, with
// withPprof, Go's profiles under /debug/pprof/, behind "Authorization:
// Bearer token" when token is not empty.
func (g *Gateway) MetricsHandler(token string, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
