package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/serve"
)

// SequenceSource reports the sequence batchers' counters (a serve.Server's
// Sequences).
type SequenceSource interface {
	Sequences() map[[2]string]serve.SequenceStats
}

// The sequence batchers of stateful models (sequence_batching), read from
// the pending source's Sequences at each scrape.
var (
	seqSlotsDesc = prometheus.NewDesc("kiln_sequence_slots",
		"Sequences a stateful model may keep active at once", labels, nil)
	seqActiveDesc = prometheus.NewDesc("kiln_sequence_active",
		"Sequences of a stateful model active now (holding a slot)", labels, nil)
	seqWaitingDesc = prometheus.NewDesc("kiln_sequence_waiting",
		"New sequences of a stateful model waiting for a free slot", labels, nil)
	seqTotalDesc = prometheus.NewDesc("kiln_sequence_total",
		"Sequences of a stateful model by outcome: started, ended (sequence_end) or timed_out (idle past max_sequence_idle_microseconds)",
		append(append([]string{}, labels...), "outcome"), nil)
)

type sequenceCollector struct{ m *Metrics }

func (c sequenceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- seqSlotsDesc
	ch <- seqActiveDesc
	ch <- seqWaitingDesc
	ch <- seqTotalDesc
}

func (c sequenceCollector) Collect(ch chan<- prometheus.Metric) {
	src, ok := c.m.pending.(SequenceSource)
	if !ok {
		return
	}
	for k, st := range src.Sequences() {
		ch <- prometheus.MustNewConstMetric(seqSlotsDesc, prometheus.GaugeValue, float64(st.Slots), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(seqActiveDesc, prometheus.GaugeValue, float64(st.Active), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(seqWaitingDesc, prometheus.GaugeValue, float64(st.Waiting), k[0], k[1])
		for _, o := range []struct {
			name string
			n    uint64
		}{{"started", st.Started}, {"ended", st.Ended}, {"timed_out", st.TimedOut}} {
			ch <- prometheus.MustNewConstMetric(seqTotalDesc, prometheus.CounterValue, float64(o.n), k[0], k[1], o.name)
		}
	}
}
