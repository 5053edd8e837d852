// Package metrics exports a serve.Server's measurements in the Prometheus
// format under Triton's metric names (nv_inference_request_success,
// nv_inference_request_failure{reason}, nv_inference_count,
// nv_inference_exec_count, nv_inference_pending_request_count,
// nv_inference_request_duration_us, nv_inference_queue_duration_us,
// nv_inference_compute_input_duration_us, nv_inference_compute_infer_duration_us,
// nv_inference_compute_output_duration_us, and with EnableGPU
// nv_gpu_utilization, nv_gpu_memory_total_bytes, nv_gpu_memory_used_bytes),
// so existing dashboards work, plus histograms of request latency, queue
// time, batch size and model load time, and the counter
// kiln_inference_exec_context_switch_count: batches of a model version that
// ran on another instance (execution context) than the version's previous
// batch; kiln_inference_slo_met_count and kiln_inference_slo_missed_count:
// requests of a model with a latency objective (slo_p99_ms) within it and
// not; the response cache's nv_cache_num_hits_per_model,
// nv_cache_num_misses_per_model, nv_cache_hit_duration_per_model,
// nv_cache_miss_duration_per_model (microseconds), nv_cache_num_entries,
// nv_cache_num_evictions and nv_cache_util; and the Go runtime's (go_*) and the process's (process_*) metrics.
//
// PortHandler is the whole metrics port: /metrics, and optionally the
// net/http/pprof profiles, behind an optional bearer token.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kilnai/kiln/serve"
)

var _ serve.SLOObserver = (*Metrics)(nil)

// PendingSource reports the requests waiting per (model, version).
type PendingSource interface {
	Pending() map[[2]string]int
}

// Metrics collects a server's measurements; it implements serve.Observer.
type Metrics struct {
	reg                                 *prometheus.Registry
	success, failure, count, exec       *prometheus.CounterVec
	switches                            *prometheus.CounterVec
	sloMet, sloMissed                   *prometheus.CounterVec
	requestUs, queueUs, computeUs       *prometheus.CounterVec
	inputUs, outputUs                   *prometheus.CounterVec
	latency, queueTime, batchSize, load *prometheus.HistogramVec
	pending                             PendingSource
	pendingDesc                         *prometheus.Desc
	served                              *servedMetric

	// the children of a model version's labels, found once (see of)
	kidsMu sync.RWMutex
	kids   map[[2]string]*versionMetrics
}

// versionMetrics are the metrics of one model version that every request
// or execution updates, taken from their vectors once: looking a child up
// by its label values hashes and checks them each time.
type versionMetrics struct {
	success, count, exec                             prometheus.Counter
	requestUs, queueUs, inputUs, computeUs, outputUs prometheus.Counter
	latency, queueTime, batchSize                    prometheus.Observer
}

// of returns the metrics of a model version (label values never deleted:
// the children stay valid).
func (m *Metrics) of(model, version string) *versionMetrics {
	k := [2]string{model, version}
	m.kidsMu.RLock()
	v := m.kids[k]
	m.kidsMu.RUnlock()
	if v != nil {
		return v
	}
	v = &versionMetrics{
		success: m.success.WithLabelValues(model, version), count: m.count.WithLabelValues(model, version),
		exec: m.exec.WithLabelValues(model, version), requestUs: m.requestUs.WithLabelValues(model, version),
		queueUs: m.queueUs.WithLabelValues(model, version), inputUs: m.inputUs.WithLabelValues(model, version),
		computeUs: m.computeUs.WithLabelValues(model, version), outputUs: m.outputUs.WithLabelValues(model, version),
		latency: m.latency.WithLabelValues(model, version), queueTime: m.queueTime.WithLabelValues(model, version),
		batchSize: m.batchSize.WithLabelValues(model, version),
	}
	m.kidsMu.Lock()
	if m.kids == nil {
		m.kids = map[[2]string]*versionMetrics{}
	}
	m.kids[k] = v
	m.kidsMu.Unlock()
	return v
}

var labels = []string{"model", "version"}

// New returns metrics registered in a new registry; pending may be nil.
func New(pending PendingSource) *Metrics {
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(append([]string{}, labels...), extra...))
	}
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		success: counter("nv_inference_request_success", "Number of successful inference requests, all batch sizes"),
		failure: counter("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", "reason"),
		count:   counter("nv_inference_count", "Number of inferences performed (a batch of n counts n)"),
		exec:    counter("nv_inference_exec_count", "Number of model executions performed"),
		switches: counter("kiln_inference_exec_context_switch_count",
			"Number of model executions that ran on another instance (execution context) than the model version's previous execution"),
		sloMet: counter("kiln_inference_slo_met_count",
			"Number of requests of a model with a latency objective (slo_p99_ms) that finished within it"),
		sloMissed: counter("kiln_inference_slo_missed_count",
			"Number of requests of a model with a latency objective (slo_p99_ms) that finished after it, or were refused for a full queue or a queue timeout"),
		requestUs: counter("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds"),
		queueUs:   counter("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds"),
		computeUs: counter("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds"),
		inputUs:   counter("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds"),
		outputUs:  counter("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds"),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kiln_request_duration_seconds",
			Help: "Inference request latency", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, labels),
		queueTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kiln_queue_duration_seconds",
			Help: "Time requests wait in the queue", Buckets: prometheus.ExponentialBuckets(0.00001, 2, 20)}, labels),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kiln_batch_size",
			Help: "Batch size of each model execution", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}, labels),
		load: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kiln_model_load_duration_seconds",
			Help: "Time to load a model", Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}, []string{"model"}),
		pending: pending,
		pendingDesc: prometheus.NewDesc("nv_inference_pending_request_count",
			"Instantaneous number of pending requests awaiting execution", labels, nil),
		served: newServedMetric(),
	}
	m.reg.MustRegister(m.served.vec)
	m.reg.MustRegister(m.success, m.failure, m.count, m.exec, m.switches, m.sloMet, m.sloMissed, m.requestUs, m.queueUs, m.computeUs, m.inputUs, m.outputUs,
		m.latency, m.queueTime, m.batchSize, m.load, pendingCollector{m}, modelReadyCollector{m}, sequenceCollector{m}, cacheCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type pendingCollector struct{ m *Metrics }

func (p pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- p.m.pendingDesc }

func (p pendingCollector) Collect(ch chan<- prometheus.Metric) {
	if p.m.pending == nil {
		return
	}
	for k, n := range p.m.pending.Pending() {
		ch <- prometheus.MustNewConstMetric(p.m.pendingDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}

// SetPending sets the source of the pending request gauge (the server, made
// after the metrics it reports to).
func (m *Metrics) SetPending(p PendingSource) { m.pending = p }

// RequestDone records a finished request.
func (m *Metrics) RequestDone(model, version string, batch int, reason string, t serve.Times) {
	if reason != "" {
		m.failure.WithLabelValues(model, version, reason).Inc()
		return
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	v := m.of(model, version)
	v.success.Inc()
	v.count.Add(float64(batch))
	v.requestUs.Add(us(t.Total))
	v.queueUs.Add(us(t.Queue))
	v.inputUs.Add(us(t.ComputeInput))
	v.computeUs.Add(us(t.ComputeInfer))
	v.outputUs.Add(us(t.ComputeOutput))
	v.latency.Observe(t.Total.Seconds())
	v.queueTime.Observe(t.Queue.Seconds())
}

// Executed records one model execution.
func (m *Metrics) Executed(model, version string, requests, batchSize int, compute time.Duration) {
	v := m.of(model, version)
	v.exec.Inc()
	v.batchSize.Observe(float64(batchSize))
}

// ContextSwitched records an execution-context switch.
func (m *Metrics) ContextSwitched(model, version string) {
	m.switches.WithLabelValues(model, version).Inc()
}

// SLORequest records whether a request of a model with a latency
// objective met it.
func (m *Metrics) SLORequest(model, version string, met bool) {
	if met {
		m.sloMet.WithLabelValues(model, version).Inc()
	} else {
		m.sloMissed.WithLabelValues(model, version).Inc()
	}
}

// ModelLoaded records how long a model took to load.
func (m *Metrics) ModelLoaded(model string, took time.Duration) {
	m.load.WithLabelValues(model).Observe(took.Seconds())
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
