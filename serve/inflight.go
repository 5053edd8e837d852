package serve

import "time"

// EdgeObserver is an optional capability of an Observer: it is told the
// whole time of each inference request in the server, from its arrival at
// the HTTP, gRPC or WebSocket edge to its response written (Served),
// decoding, queueing, running and encoding included. By Little's law its
// rate is the mean number of requests in flight, which the autoscaler
// tracks (kiln_inflight_requests): the scheduler's time alone
// (Times.Total) leaves out the edges, most of a small model's time.
type EdgeObserver interface {
	RequestServed(model string, took time.Duration)
}

// Served tells the observer (an EdgeObserver) that the response of an
// inference request for model, which arrived at arrived, is written; the
// edges call it, successes and failures alike. A request for a model the
// server does not know is not reported: its name is whatever a client
// sent.
func (s *Server) Served(model string, arrived time.Time) {
	eo, ok := s.opts.Observer.(EdgeObserver)
	if !ok {
		return
	}
	s.mu.RLock()
	_, known := s.models[model]
	s.mu.RUnlock()
	if known {
		eo.RequestServed(model, time.Since(arrived))
	}
}
