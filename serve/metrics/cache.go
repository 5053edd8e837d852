package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/serve"
)

// CacheSource reports the response cache's counters (a serve.Server's).
type CacheSource interface {
	ModelStats(model, version string) ([]serve.Stats, error)
	CacheUsage() (serve.CacheUsage, bool)
}

// The response cache, under Triton's names, read from the pending source
// at each scrape.
var (
	cacheHitsDesc = prometheus.NewDesc("nv_cache_num_hits_per_model",
		"Number of requests of a model answered from the response cache", labels, nil)
	cacheMissesDesc = prometheus.NewDesc("nv_cache_num_misses_per_model",
		"Number of requests of a model not in the response cache (computed, then stored)", labels, nil)
	cacheHitUsDesc = prometheus.NewDesc("nv_cache_hit_duration_per_model",
		"Cumulative time in microseconds looking up the response cache's hits", labels, nil)
	cacheMissUsDesc = prometheus.NewDesc("nv_cache_miss_duration_per_model",
		"Cumulative time in microseconds looking up and storing the response cache's misses", labels, nil)
	cacheEntriesDesc = prometheus.NewDesc("nv_cache_num_entries",
		"Number of responses in the response cache", nil, nil)
	cacheEvictionsDesc = prometheus.NewDesc("nv_cache_num_evictions",
		"Number of responses dropped from the response cache to make room", nil, nil)
	cacheUtilDesc = prometheus.NewDesc("nv_cache_util",
		"Fraction of the response cache's bound (kiln serve --cache-size) in use", nil, nil)
)

type cacheCollector struct{ m *Metrics }

func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheHitsDesc, cacheMissesDesc, cacheHitUsDesc, cacheMissUsDesc, cacheEntriesDesc, cacheEvictionsDesc, cacheUtilDesc} {
		ch <- d
	}
}

func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	src, ok := c.m.pending.(CacheSource)
	if !ok {
		return
	}
	u, ok := src.CacheUsage()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(u.Entries))
	ch <- prometheus.MustNewConstMetric(cacheEvictionsDesc, prometheus.CounterValue, float64(u.Evictions))
	ch <- prometheus.MustNewConstMetric(cacheUtilDesc, prometheus.GaugeValue, float64(u.Bytes)/float64(max(u.MaxBytes, 1)))
	st, _ := src.ModelStats("", "")
	for _, s := range st {
		if s.CacheHitCount+s.CacheMissCount == 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(cacheHitsDesc, prometheus.CounterValue, float64(s.CacheHitCount), s.Model, s.Version)
		ch <- prometheus.MustNewConstMetric(cacheMissesDesc, prometheus.CounterValue, float64(s.CacheMissCount), s.Model, s.Version)
		ch <- prometheus.MustNewConstMetric(cacheHitUsDesc, prometheus.CounterValue, float64(s.CacheHitNs)/1e3, s.Model, s.Version)
		ch <- prometheus.MustNewConstMetric(cacheMissUsDesc, prometheus.CounterValue, float64(s.CacheMissNs)/1e3, s.Model, s.Version)
	}
}
