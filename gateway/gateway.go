package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Errors of the gateway; the edges (HTTP, gRPC) turn them into statuses.
var (
	// ErrConfig is a bad option, flag or backend spec.
	ErrConfig = errors.New("gateway: bad configuration")
	// ErrNoBackend: no backend has the model (version) ready (503 / UNAVAILABLE).
	ErrNoBackend = errors.New("no backend has the model ready")
	// ErrOverloaded: every eligible backend's queue is full (429 / RESOURCE_EXHAUSTED).
	ErrOverloaded = errors.New("every eligible backend's queue is full")
	// ErrUnauthenticated: no client token, or an unknown one (401 / UNAUTHENTICATED).
	ErrUnauthenticated = errors.New("missing or unknown client token")
	// ErrRateLimited: the client is over its rate (429 / RESOURCE_EXHAUSTED).
	ErrRateLimited = errors.New("client over its rate limit")
	// ErrDraining: the gateway is shutting down (503 / UNAVAILABLE).
	ErrDraining = errors.New("gateway shutting down")
)

// Options configure a Gateway; the zero value of a field is its default.
type Options struct {
	// Policy is a registered balancing policy: "least" (default), "p2c", "roundrobin".
	Policy string
	Logger *slog.Logger
	// PollInterval is how often each backend's readiness, repository
	// index and queue depth are read (default 250 ms).
	PollInterval time.Duration
	// FailureThreshold consecutive failures eject a backend (default 3).
	FailureThreshold int
	// EjectTime is how long an ejected backend gets no traffic before
	// polls may readmit it (default 2 s).
	EjectTime time.Duration
	// SlowStart is how long a new or readmitted backend takes to get its
	// full share (default 3 s; negative: none).
	SlowStart time.Duration
	// MaxAttempts is how many backends one request may be tried on (default 3).
	MaxAttempts int
	// RetryRatio and MinRetries are the retry budget: retries in a second
	// may reach RetryRatio of the requests (default 0.2) or MinRetries
	// (default 20), whichever is more.
	RetryRatio float64
	MinRetries int
	// NoRetryLost turns off the retry of stateless requests whose
	// connection was lost before any answer (they may have run; inference
	// without a sequence_id has no effect but its answer).
	NoRetryLost bool
	// MaxQueue, when positive, is a backend's queue capacity as the gateway
	// sees it: outstanding plus queued requests; when every eligible backend
	// is at it, requests are refused with 429 without being sent.
	MaxQueue int64
	// BackendToken, when set, replaces the client's Authorization header
	// (gRPC metadata) on requests to backends, and is used by the polls.
	BackendToken string
	// Clients, when not empty, are the only callers admitted.
	Clients []Client
	// MaxRequestBytes bounds an HTTP request body (default 64 MiB).
	MaxRequestBytes int64
}

func (o *Options) defaults() {
	if o.Policy == "" {
		o.Policy = "least"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 3
	}
	if o.EjectTime <= 0 {
		o.EjectTime = 2 * time.Second
	}
	if o.SlowStart == 0 {
		o.SlowStart = 3 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	if o.RetryRatio <= 0 {
		o.RetryRatio = 0.2
	}
	if o.MinRetries <= 0 {
		o.MinRetries = 20
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 64 << 20
	}
}

// Gateway routes KServe v2 requests to backends. Create it with New, feed
// it backends with SetEndpoints (or Run with a Discoverer), serve its
// Handler and its gRPC options.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	policy  Policy
	metrics *Metrics
	admit   *admission

	mu       sync.RWMutex
	backends map[string]*Backend
	list     []*Backend // the backends sorted by name: pick's candidates in a fixed order
	polls    map[string]context.CancelFunc
	seqs     sync.Map // sequence key -> *stickTo

	budget   retryBudget
	draining atomic.Bool
	baseCtx  context.Context
	stop     context.CancelFunc

	transport *http.Transport // for the WebSocket handshakes
	h1        *h1Pool         // for every other HTTP request to a backend
	poller    *http.Client
}

// New returns a Gateway with no backends.
func New(opts Options) (*Gateway, error) {
	opts.defaults()
	p, err := NewPolicy(opts.Policy)
	if err != nil {
		return nil, err
	}
	ad, err := newAdmission(opts.Clients)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	g := &Gateway{
		opts: opts, log: opts.Logger, policy: p, metrics: newMetrics(), admit: ad,
		backends: map[string]*Backend{}, polls: map[string]context.CancelFunc{},
		budget:  retryBudget{ratio: opts.RetryRatio, min: opts.MinRetries},
		baseCtx: ctx, stop: cancel,
		transport: &http.Transport{
			DialContext: dialer.DialContext, MaxIdleConns: 1024, MaxIdleConnsPerHost: 256,
			IdleConnTimeout: 90 * time.Second, DisableCompression: true, ForceAttemptHTTP2: false,
			// a tensor body goes in a few large writes rather than many 4 KiB ones
			WriteBufferSize: 64 << 10, ReadBufferSize: 64 << 10,
		},
	}
	g.h1 = newH1Pool(dialer.DialContext, 256)
	g.poller = &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 4,
		DisableCompression: true}, Timeout: max(2*opts.PollInterval, 2*time.Second)}
	g.metrics.watch(g)
	go g.forgetSequences(ctx)
	return g, nil
}

// Close stops the polls and closes the backends' connections.
func (g *Gateway) Close() {
	g.stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.backends {
		b.closeConn(0)
	}
	g.transport.CloseIdleConnections()
	g.h1.closeIdle("")
}

// SetEndpoints makes eps the gateway's backends: new ones are added (and
// polled at once, taking traffic once ready, with slow start), missing ones
// removed (their requests in flight finish).
func (g *Gateway) SetEndpoints(eps []Endpoint) {
	want := map[string]Endpoint{}
	for _, e := range eps {
		want[e.HTTP] = e
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, b := range g.backends {
		if e, ok := want[name]; !ok || e != b.Endpoint {
			b.removed.Store(true)
			g.polls[name]()
			delete(g.polls, name)
			delete(g.backends, name)
			b.closeConn(30 * time.Second) // streams in flight finish first
			g.h1.closeIdle(b.HTTP)
			g.log.Info("backend removed", "backend", name)
		}
	}
	for name, e := range want {
		if _, ok := g.backends[name]; ok {
			continue
		}
		b := newBackend(e, time.Now())
		g.backends[name] = b
		ctx, cancel := context.WithCancel(g.baseCtx)
		g.polls[name] = cancel
		go g.pollLoop(ctx, b)
		g.log.Info("backend added", "backend", e.String())
	}
	g.relist()
}

// relist rebuilds g.list from g.backends; g.mu is held.
func (g *Gateway) relist() {
	list := make([]*Backend, 0, len(g.backends))
	for _, b := range g.backends {
		list = append(list, b)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name() < list[j].Name() })
	g.list = list
}

// Backends returns a snapshot of the backends, sorted by name.
func (g *Gateway) Backends() []State {
	now := time.Now()
	g.mu.RLock()
	out := make([]State, 0, len(g.backends))
	for _, b := range g.backends {
		out = append(out, b.state(now))
	}
	g.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].HTTP < out[j].HTTP })
	return out
}

// Ready reports whether the gateway takes requests: not draining, and at
// least one backend ready.
func (g *Gateway) Ready() bool {
	if g.draining.Load() {
		return false
	}
	for _, s := range g.Backends() {
		if s.Ready && !s.Ejected {
			return true
		}
	}
	return false
}

// Drain makes the gateway not ready: health checks answer 503 (NOT_SERVING),
// new requests are refused with 503 / UNAVAILABLE, and those in flight go on.
func (g *Gateway) Drain() { g.draining.Store(true) }

// Outstanding is the number of requests in flight on all backends.
func (g *Gateway) Outstanding() int64 {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var n int64
	for _, b := range g.backends {
		n += b.Outstanding()
	}
	return n
}

// route is what routing needs of one request.
type route struct {
	model, version string
	seq            string // sequence key, "" for none
	end            bool   // the sequence's last request (sequence_end)
	prio           bool   // the request sets its own priority (gRPC)
	grpc           bool   // needs the backend's gRPC address
}

// pick chooses a backend for rt, not one of tried.
func (g *Gateway) pick(rt route, tried []*Backend) (*Backend, error) {
	now := time.Now()
	g.mu.RLock()
	sc := pickPool.Get().(*pickScratch)
	defer sc.release()
	all, cands := sc.all[:0], sc.cands[:0]
	for _, b := range g.list { // a fixed order, for round robin
		if rt.grpc && b.GRPC == "" || containsBackend(tried, b) {
			continue
		}
		ok, w := b.serves(rt.model, rt.version, now, g.opts.SlowStart)
		if !ok {
			continue
		}
		all = append(all, b)
		if w >= 1 || rand.Float64() < w {
			cands = append(cands, b)
		}
	}
	sc.all, sc.cands = all, cands // kept (grown) for the next request
	var sticky *Backend
	if rt.seq != "" {
		if v, ok := g.seqs.Load(rt.seq); ok {
			st := v.(*stickTo)
			st.last.Store(now.UnixNano())
			if b := g.backends[st.backend]; b != nil && containsBackend(all, b) {
				sticky = b
			}
		}
	}
	g.mu.RUnlock()
	if sticky != nil {
		if rt.end {
			g.seqs.Delete(rt.seq)
		}
		return sticky, nil
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%w: model %q%s", ErrNoBackend, rt.model, versionText(rt.version))
	}
	if len(cands) == 0 {
		cands = all // every one in slow start and none drawn
	}
	if g.opts.MaxQueue > 0 {
		open := sc.open[:0]
		for _, b := range cands {
			if b.Load() < g.opts.MaxQueue {
				open = append(open, b)
			}
		}
		if len(open) == 0 {
			return nil, fmt.Errorf("%w: model %q", ErrOverloaded, rt.model)
		}
		cands, sc.open = open, open // kept for the next request
	}
	b := g.policy.Pick(cands)
	if rt.seq != "" && !rt.end {
		st := &stickTo{backend: b.Name()}
		st.last.Store(now.UnixNano())
		g.seqs.Store(rt.seq, st)
	}
	return b, nil
}

// pickScratch holds pick's lists of backends between requests.
type pickScratch struct{ all, cands, open []*Backend }

var pickPool = sync.Pool{New: func() any { return new(pickScratch) }}

// release forgets the backends and puts the lists back in the pool.
func (sc *pickScratch) release() {
	for _, l := range []*[]*Backend{&sc.all, &sc.cands, &sc.open} {
		clear((*l)[:cap(*l)])
		*l = (*l)[:0]
	}
	pickPool.Put(sc)
}

// stickTo is the backend of a sequence and when the sequence was last seen.
type stickTo struct {
	backend string
	last    atomic.Int64 // unix nanoseconds
}

// SequenceIdle is how long a sequence without requests keeps its backend.
const SequenceIdle = 10 * time.Minute

// forgetSequences drops the sequences idle for SequenceIdle, every minute,
// until ctx ends (a sequence's last request, with sequence_end, drops it
// at once).
func (g *Gateway) forgetSequences(ctx context.Context) {
	every(ctx, time.Minute, func() {
		old := time.Now().Add(-SequenceIdle).UnixNano()
		g.seqs.Range(func(k, v any) bool {
			if v.(*stickTo).last.Load() < old {
				g.seqs.Delete(k)
			}
			return true
		})
	})
}

func containsBackend(bs []*Backend, b *Backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

func versionText(v string) string {
	if v == "" {
		return ""
	}
	return " version " + v
}

// outcome is how one attempt on a backend ended.
type outcome int

const (
	answered  outcome = iota // the backend answered (any status but 503)
	refused                  // 503 / UNAVAILABLE: not ready for it, did not run
	unreached                // no connection: the request never reached it
	lost                     // the connection broke before an answer
)

// done records an attempt's outcome on b for the health of b.
func (g *Gateway) done(b *Backend, rt route, o outcome) {
	switch o {
	case answered:
		b.failures.Store(0)
	case refused:
		b.mu.Lock()
		if vs := b.models[rt.model]; vs != nil {
			for v := range vs {
				if rt.version == "" || v == rt.version {
					vs[v] = false // until the next poll says READY again
				}
			}
		}
		b.mu.Unlock()
	case unreached, lost:
		n := b.failures.Add(1)
		if o == unreached || n >= int64(g.opts.FailureThreshold) {
			// a refused connection is conclusive; lost ones count
			g.eject(b, o == unreached)
		}
	}
}

// eject takes b out of rotation for EjectTime; polls readmit it after,
// once it answers ready, with slow start.
func (g *Gateway) eject(b *Backend, unreachable bool) {
	b.mu.Lock()
	now := time.Now()
	if !b.ready && now.Before(b.ejectedUntil) {
		b.mu.Unlock()
		return
	}
	b.ready = false
	b.ejectedUntil = now.Add(g.opts.EjectTime)
	b.ejections++
	b.mu.Unlock()
	b.failures.Store(0)
	g.metrics.ejections.WithLabelValues(b.Name()).Inc()
	g.log.Warn("backend ejected", "backend", b.Name(), "unreachable", unreachable, "for", g.opts.EjectTime)
}

// retryBudget allows retries in a second up to ratio of the requests of
// that second and the one before, or min.
type retryBudget struct {
	ratio float64
	min   int

	mu                   sync.Mutex
	second               int64
	reqs, prevReqs, used int
}

func (r *retryBudget) roll(now time.Time) {
	s := now.Unix()
	if s != r.second {
		if s == r.second+1 {
			r.prevReqs = r.reqs
		} else {
			r.prevReqs = 0
		}
		r.second, r.reqs, r.used = s, 0, 0
	}
}

func (r *retryBudget) request() {
	r.mu.Lock()
	r.roll(time.Now())
	r.reqs++
	r.mu.Unlock()
}

func (r *retryBudget) allow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(time.Now())
	if r.used >= max(r.min, int(r.ratio*float64(r.reqs+r.prevReqs))) {
		return false
	}
	r.used++
	return true
}

// conn returns b's gRPC client connection, made on first use.
func (g *Gateway) conn(b *Backend) (*grpc.ClientConn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cc != nil {
		return b.cc, nil
	}
	cc, err := grpc.NewClient(b.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(grpcStreamWindow), grpc.WithInitialConnWindowSize(grpcConnWindow),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(int(min(g.opts.MaxRequestBytes*4, 1<<31-1)))))
	if err != nil {
		return nil, err
	}
	b.cc = cc
	return cc, nil
}

// closeConn closes b's gRPC connection after delay.
func (b *Backend) closeConn(delay time.Duration) {
	b.mu.Lock()
	cc := b.cc
	b.cc = nil
	b.mu.Unlock()
	switch {
	case cc == nil:
	case delay <= 0:
		cc.Close()
	default:
		time.AfterFunc(delay, func() { cc.Close() })
	}
}
