package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/serve"
)

// IndexSource lists the models of a server with their state (a
// serve.Server's RepositoryIndex).
type IndexSource interface {
	RepositoryIndex() []serve.IndexEntry
}

// modelReadyDesc is kiln_model_ready{model,version}: 1 for a model version
// that is READY, 0 for one of the repository that is not (loading, failed
// to load, unloaded), read from the pending source's RepositoryIndex at
// each scrape. A model that is not loaded has no version: its series has
// version "". Alerts use it for a model that no pod serves.
var modelReadyDesc = prometheus.NewDesc("kiln_model_ready",
	"Whether a model version is ready (1) or in the repository but not ready (0): loading, failed to load or unloaded",
	labels, nil)

type modelReadyCollector struct{ m *Metrics }

func (c modelReadyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- modelReadyDesc }

func (c modelReadyCollector) Collect(ch chan<- prometheus.Metric) {
	src, ok := c.m.pending.(IndexSource)
	if !ok {
		return
	}
	seen := map[[2]string]bool{}
	for _, e := range src.RepositoryIndex() {
		k := [2]string{e.Name, e.Version}
		if seen[k] {
			continue
		}
		seen[k] = true
		v := 0.0
		if e.State == "READY" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(modelReadyDesc, prometheus.GaugeValue, v, e.Name, e.Version)
	}
}
