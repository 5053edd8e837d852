package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kilnai/kiln/internal/version"
)

// Handler is the gateway's KServe v2 HTTP API: health and server metadata
// answered from the gateway's view, the repository index merged over the
// backends, and every /v2/models/... route proxied to a backend where the
// model is ready (inference, metadata, readiness, config, statistics, the
// WebSocket stream).
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {
		if g.Ready() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /v2", g.admitted(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"name": "kiln-gateway", "version": version.Kiln,
			"extensions": []string{"model_repository", "binary_tensor_data", "statistics"}})
	}))
	mux.HandleFunc("POST /v2/repository/index", g.admitted(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.index())
	}))
	mux.HandleFunc("/v2/models/", g.admitted(g.models))
	return mux
}

// admitted checks the caller's token and rate before h.
func (g *Gateway) admitted(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := g.admit.admit(r.Header.Get("Authorization"), time.Now())
		if err != nil {
			g.reject(w, err)
			return
		}
		if c.Priority > 0 {
			r = r.WithContext(context.WithValue(r.Context(), priorityKey{}, c.Priority))
		}
		h(w, r)
	}
}

// priorityKey is the context key of the admitted client's priority level.
type priorityKey struct{}

// index lists each model version ready on some backend.
func (g *Gateway) index() []map[string]string {
	seen := map[[2]string]bool{}
	out := []map[string]string{}
	for _, s := range g.Backends() {
		if !s.Ready || s.Ejected {
			continue
		}
		for m, vs := range s.Models {
			for _, v := range vs {
				if !seen[[2]string{m, v}] {
					seen[[2]string{m, v}] = true
					e := map[string]string{"name": m, "state": "READY"}
					if v != "" {
						e["version"] = v
					}
					out = append(out, e)
				}
			}
		}
	}
	return out
}

// parseModelPath reads /v2/models/{m}[/versions/{v}][/action].
func parseModelPath(p string) (model, version, action string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v2/models/")
	if !ok || rest == "" {
		return "", "", "", false
	}
	// model[/versions/version][/action], without allocating
	model, rest, more := strings.Cut(rest, "/")
	if more {
		if v, after, ok := strings.Cut(rest, "/"); ok && v == "versions" {
			version, rest, more = strings.Cut(after, "/")
			if version == "" {
				return "", "", "", false
			}
		}
	}
	if more {
		if strings.Contains(rest, "/") {
			return "", "", "", false
		}
		action = rest
	}
	return model, version, action, model != ""
}

func (g *Gateway) models(w http.ResponseWriter, r *http.Request) {
	model, version, action, ok := parseModelPath(r.URL.Path)
	if model == "stats" && version == "" && action == "" {
		model = "" // statistics of every model: any ready backend's
	} else if !ok {
		writeError(w, http.StatusNotFound, "no such route "+r.URL.Path)
		return
	}
	want := http.MethodGet
	if action == "infer" {
		want = http.MethodPost
	}
	switch action {
	case "", "ready", "infer", "config", "stats", "stream":
	default:
		writeError(w, http.StatusNotFound, "no such route "+r.URL.Path)
		return
	}
	if r.Method != want {
		w.Header().Set("Allow", want)
		writeError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": want "+want)
		return
	}
	if g.draining.Load() {
		g.reject(w, ErrDraining)
		return
	}
	rt := route{model: model, version: version}
	if action == "stats" || model == "" {
		// one backend's statistics, not the cluster's: said so, for
		// kiln perf and the like
		w.Header()[StatisticsHeader] = oneBackend
	}
	if action == "stream" {
		g.proxyWebSocket(w, r, rt)
		return
	}
	var body []byte
	if r.Method == http.MethodPost {
		buf := bodyPool.Get().(*bytes.Buffer)
		buf.Reset()
		defer func() {
			if buf.Cap() <= 4<<20 { // keep small buffers only
				bodyPool.Put(buf)
			}
		}()
		var err error
		switch n := r.ContentLength; {
		case n > g.opts.MaxRequestBytes:
			err = &http.MaxBytesError{Limit: g.opts.MaxRequestBytes}
		case n >= 0 && r.Body != nil:
			// the length is known (net/http's server says -1 otherwise)
			buf.Grow(int(n))
			body = buf.AvailableBuffer()[:n]
			if _, err = io.ReadFull(r.Body, body); err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
		default:
			_, err = buf.ReadFrom(http.MaxBytesReader(w, r.Body, g.opts.MaxRequestBytes))
			body = buf.Bytes()
		}
		if err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", mb.Limit))
				return
			}
			writeError(w, http.StatusBadRequest, "reading the request: "+err.Error())
			return
		}
		if action == "infer" {
			hl := r.Header.Get("Inference-Header-Content-Length")
			rt.seq, rt.end = httpSequence(body, hl)
			if p, ok := r.Context().Value(priorityKey{}).(int); ok {
				if body, hl = withPriority(body, hl, p); hl != "" {
					r.Header.Set("Inference-Header-Content-Length", hl)
				}
			}
		}
	}
	g.proxyHTTP(w, r, rt, body)
}

// httpSequence returns the sequence_id parameter of a KServe v2 JSON
// request (for the binary extension, of its JSON header only) as a key, ""
// when it has none, and whether sequence_end is true. Only the request's
// parameters are decoded, and only when the bytes mention sequence_id at all.
func httpSequence(body []byte, headerLen string) (string, bool) {
	if headerLen != "" {
		n, err := strconv.Atoi(headerLen)
		if err != nil || n < 0 || n > len(body) {
			return "", false
		}
		body = body[:n]
	}
	if !mentionsSequenceID(body) {
		return "", false
	}
	var req struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if json.Unmarshal(body, &req) != nil {
		return "", false
	}
	id, ok := req.Parameters["sequence_id"]
	if !ok {
		return "", false
	}
	return "s" + string(bytes.TrimSpace(id)), string(bytes.TrimSpace(req.Parameters["sequence_end"])) == "true"
}

// mentionsSequenceID reports whether b holds "sequence_id" (with its
// quotes). It looks for the underscore, a byte that a request's numbers
// never hold, with bytes.IndexByte: bytes.Contains, after the quotes of a
// request's first bytes, compares at every byte of the tensor data that
// follows, several times slower on a large JSON body.
func mentionsSequenceID(b []byte) bool {
	const key = `"sequence_id"`
	const at = len(`"sequence`) // the underscore's index in key
	for {
		i := bytes.IndexByte(b, '_')
		if i < 0 {
			return false
		}
		if i >= at && bytes.HasPrefix(b[i-at:], []byte(key)) {
			return true
		}
		b = b[i+1:]
	}
}

// bodyPool holds request body buffers: a body is read whole (to be sent
// again on a retry) and released once the answer has been copied.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// StatisticsHeader is set on the statistics answers the gateway passes on
// (HTTP header, gRPC header metadata in lower case) to say that they are
// one backend's, not the sum over the backends: a client that compares
// them with its own count (kiln perf) knows not to.
const StatisticsHeader = "Kiln-Gateway-Statistics"

var oneBackend = []string{"one backend"}

// hop-by-hop headers, not forwarded.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// proxyHTTP sends the request to a backend, and on a failure that allows
// it to another, then copies the answer back.
func (g *Gateway) proxyHTTP(w http.ResponseWriter, r *http.Request, rt route, body []byte) {
	g.budget.request()
	var triedArr [4]*Backend
	tried := triedArr[:0]
	var last *http.Response // the last 503 or 429 (its status and header), answered if no backend takes the request
	var lastBody []byte
	var lastErr error
	auth := ""
	if g.opts.BackendToken != "" {
		auth = "Bearer " + g.opts.BackendToken
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	for attempt := 0; attempt < g.opts.MaxAttempts; attempt++ {
		b, err := g.pick(rt, tried)
		if err != nil {
			if last != nil || lastErr != nil {
				break
			}
			g.reject(w, err)
			return
		}
		if attempt > 0 && !g.budget.allow() {
			g.metrics.rejected.WithLabelValues("retry_budget").Inc()
			break
		}
		tried = append(tried, b)
		start := time.Now()
		b.outstanding.Add(1)
		// a connection the backend closed while idle is replaced, where
		// a lost request may be retried at all
		retryStale := !g.opts.NoRetryLost && rt.seq == ""
		resp, err := g.h1.roundTrip(r.Context(), b.HTTP, r.Method, uri, r.Header, auth, body, retryStale)
		if err != nil {
			b.outstanding.Add(-1)
			if r.Context().Err() != nil {
				return // the client left
			}
			o := lost
			if isUnreached(err) {
				o = unreached
			}
			g.done(b, rt, o)
			lastErr, last = err, nil
			if o == lost && (g.opts.NoRetryLost || rt.seq != "") {
				break // it may have run, and may not run twice
			}
			g.metrics.retries.WithLabelValues(b.Name(), rt.model, reasonOf(o)).Inc()
			continue
		}
		if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
			// refused before running: not ready (draining, loading), or its queue is full
			lastBody, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			// the answer is the connection's, and the connection another
			// request's once its body is closed: what is answered later is copied
			last = &http.Response{StatusCode: resp.StatusCode, Header: make(http.Header, len(resp.Header))}
			copyHeader(last.Header, resp.Header)
			resp.Body.Close()
			b.outstanding.Add(-1)
			reason := "full"
			if resp.StatusCode == http.StatusServiceUnavailable {
				g.done(b, rt, refused)
				reason = "refused"
			} else {
				g.done(b, rt, answered)
			}
			g.metrics.request(b.Name(), rt.model, statusCode(resp.StatusCode))
			lastErr = nil
			if rt.seq != "" && resp.StatusCode == http.StatusTooManyRequests {
				break // a sequence stays on its backend
			}
			g.metrics.retries.WithLabelValues(b.Name(), rt.model, reason).Inc()
			continue
		}
		h := w.Header()
		copyHeader(h, resp.Header)
		w.WriteHeader(resp.StatusCode)
		buf := copyBufs.Get().(*[]byte)
		_, cerr := io.CopyBuffer(w, resp.Body, *buf)
		copyBufs.Put(buf)
		resp.Body.Close()
		b.outstanding.Add(-1)
		if cerr != nil && r.Context().Err() == nil && !clientWriteFailed(w) {
			g.done(b, rt, lost) // the backend broke off its answer
		} else {
			g.done(b, rt, answered)
		}
		g.metrics.request(b.Name(), rt.model, statusCode(resp.StatusCode))
		g.metrics.observe(b.Name(), rt.model, time.Since(start))
		return
	}
	switch {
	case last != nil:
		copyHeader(w.Header(), last.Header)
		w.Header().Del("Content-Length")
		w.WriteHeader(last.StatusCode)
		w.Write(lastBody)
		if last.StatusCode == http.StatusTooManyRequests {
			g.metrics.rejected.WithLabelValues("overloaded").Inc()
		} else {
			g.metrics.rejected.WithLabelValues("unavailable").Inc()
		}
	case lastErr != nil:
		g.metrics.rejected.WithLabelValues("backend_failed").Inc()
		writeError(w, http.StatusBadGateway, "backend failed: "+lastErr.Error())
	default:
		g.reject(w, ErrNoBackend)
	}
}

// clientWriteFailed reports whether writing the answer to the client
// failed (the client left), as HTTPServer's writer tells: the backend is
// not to blame for it.
func clientWriteFailed(w http.ResponseWriter) bool {
	hw, ok := w.(*h1Writer)
	return ok && hw.writeErr != nil
}

func reasonOf(o outcome) string {
	switch o {
	case unreached:
		return "unreached"
	case refused:
		return "refused"
	}
	return "lost"
}

// isUnreached reports whether err means the request never reached the
// backend: the connection could not be made.
func isUnreached(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// copyBufs hold the buffers that answers are copied through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyHeader copies the end-to-end headers of src into dst. The values'
// slices are shared: neither header is changed in place after (a value is
// replaced with Set, never appended to).
func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = vs
	}
	for _, k := range hopHeaders { // in canonical form
		delete(dst, k)
	}
}

// reject answers a request the gateway refuses itself.
func (g *Gateway) reject(w http.ResponseWriter, err error) {
	code, reason := http.StatusServiceUnavailable, "unavailable"
	switch {
	case errors.Is(err, ErrOverloaded):
		code, reason = http.StatusTooManyRequests, "overloaded"
	case errors.Is(err, ErrRateLimited):
		code, reason = http.StatusTooManyRequests, "rate_limited"
	case errors.Is(err, ErrUnauthenticated):
		code, reason = http.StatusUnauthorized, "unauthenticated"
		w.Header().Set("WWW-Authenticate", "Bearer")
	case errors.Is(err, ErrDraining):
		w.Header().Set("Connection", "close")
		reason = "draining"
	case errors.Is(err, ErrNoBackend):
		reason = "no_backend"
	}
	g.metrics.rejected.WithLabelValues(reason).Inc()
	writeError(w, code, err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
