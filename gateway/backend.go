package gateway

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

// Endpoint is one backend's addresses as discovery reports them: its KServe
// v2 HTTP address (host:port, which names the backend), and optionally its
// gRPC and Prometheus metrics addresses.
type Endpoint struct {
	HTTP, GRPC, Metrics string
}

// ParseEndpoint parses a backend spec: "http=HOST:PORT[,grpc=HOST:PORT]
// [,metrics=HOST:PORT]", or a bare "HOST:PORT" for the HTTP address alone.
func ParseEndpoint(s string) (Endpoint, error) {
	var e Endpoint
	s = strings.TrimSpace(s)
	if s == "" {
		return e, fmt.Errorf("%w: empty backend", ErrConfig)
	}
	if !strings.Contains(s, "=") {
		s = "http=" + s
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return e, fmt.Errorf("%w: backend %q: want KEY=HOST:PORT, got %q", ErrConfig, s, part)
		}
		if !strings.Contains(v, ":") {
			return e, fmt.Errorf("%w: backend %q: %s address %q has no port", ErrConfig, s, k, v)
		}
		switch k {
		case "http":
			e.HTTP = v
		case "grpc":
			e.GRPC = v
		case "metrics":
			e.Metrics = v
		default:
			return e, fmt.Errorf("%w: backend %q: unknown key %q (want http, grpc, metrics)", ErrConfig, s, k)
		}
	}
	if e.HTTP == "" {
		return e, fmt.Errorf("%w: backend %q has no http address", ErrConfig, s)
	}
	return e, nil
}

// String spells e as ParseEndpoint reads it.
func (e Endpoint) String() string {
	s := "http=" + e.HTTP
	if e.GRPC != "" {
		s += ",grpc=" + e.GRPC
	}
	if e.Metrics != "" {
		s += ",metrics=" + e.Metrics
	}
	return s
}

// Backend is one backend and what the gateway knows of it. Its counters are
// read by the policies without locks.
type Backend struct {
	Endpoint
	added time.Time

	outstanding atomic.Int64 // requests the gateway has sent and not yet seen answered
	queue       atomic.Int64 // the backend's own pending requests (its metrics), -1 unknown
	failures    atomic.Int64 // consecutive failures
	removed     atomic.Bool

	mu           sync.Mutex
	ready        bool                       // the backend's readiness (last poll, or a 503)
	models       map[string]map[string]bool // model -> version -> READY
	ejectedUntil time.Time
	ejections    int
	healthySince time.Time // start of the slow start
	cc           *grpc.ClientConn
}

func newBackend(e Endpoint, now time.Time) *Backend {
	b := &Backend{Endpoint: e, added: now}
	b.queue.Store(-1)
	return b
}

// Name is the backend's HTTP address, the label of its metrics.
func (b *Backend) Name() string { return b.HTTP }

// Outstanding is the number of requests the gateway has in flight on b.
func (b *Backend) Outstanding() int64 { return b.outstanding.Load() }

// QueueDepth is b's own count of requests waiting (from its metrics), 0
// when unknown.
func (b *Backend) QueueDepth() int64 { return max(b.queue.Load(), 0) }

// Load is what the load-aware policies compare: the gateway's requests in
// flight on b plus b's own queue.
func (b *Backend) Load() int64 { return b.Outstanding() + b.QueueDepth() }

// serves reports whether b can take a request for model (version "" is
// any), at now, and its slow-start weight in (0, 1].
func (b *Backend) serves(model, version string, now time.Time, slowStart time.Duration) (bool, float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.ready || now.Before(b.ejectedUntil) || b.removed.Load() {
		return false, 0
	}
	vs := b.models[model]
	ok := model == "" // no model: any ready backend (statistics of all models)
	if version == "" {
		for _, r := range vs {
			ok = ok || r
		}
	} else {
		ok = vs[version]
	}
	if !ok {
		return false, 0
	}
	w := 1.0
	if slowStart > 0 {
		if age := now.Sub(b.healthySince); age < slowStart {
			w = max(0.1, float64(age)/float64(slowStart))
		}
	}
	return true, w
}

// State is a snapshot of a backend for status pages and tests.
type State struct {
	Endpoint
	Ready       bool
	Ejected     bool
	Outstanding int64
	Queue       int64
	Models      map[string][]string // model -> READY versions
}

func (b *Backend) state(now time.Time) State {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := State{Endpoint: b.Endpoint, Ready: b.ready, Ejected: now.Before(b.ejectedUntil),
		Outstanding: b.Outstanding(), Queue: b.queue.Load(), Models: map[string][]string{}}
	for m, vs := range b.models {
		for v, r := range vs {
			if r {
				s.Models[m] = append(s.Models[m], v)
			}
		}
	}
	return s
}
