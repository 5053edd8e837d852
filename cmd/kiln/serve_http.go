package main

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// httpTimeouts are kiln serve's HTTP connection timeouts, made to fit
// inference: a request must arrive within read (so that a client sending
// its body slowly cannot hold a connection for ever), and a response be
// written within write from its first byte (so that a client not reading
// cannot either), while the time a request waits in a queue and runs, which
// can be long, counts against neither. A WebSocket stream, once upgraded,
// has no deadline: it is pinged instead.
//
// When closing is set (kiln serve sets it when the drain starts), each
// response that starts says "Connection: close" and its connection closes
// after it (for HTTP/2: a GOAWAY once idle).
type httpTimeouts struct {
	read, write, idle time.Duration
	closing           *atomic.Bool
}

// server returns an http.Server for h with the timeouts, logging its
// errors (failed TLS handshakes, accept errors) to log as warnings.
func (t httpTimeouts) server(h http.Handler, log *slog.Logger) *http.Server {
	header := 10 * time.Second
	if t.read > 0 {
		header = min(header, t.read)
	}
	return &http.Server{
		Handler: t.handler(h), ReadHeaderTimeout: header,
		// The whole request, headers and body (net/http lifts the deadline
		// once the body has been read).
		ReadTimeout: t.read,
		// WriteTimeout stays 0: it would count from the end of the request
		// headers, computing included; handler sets the deadline when the
		// response starts instead.
		IdleTimeout: t.idle,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// handler wraps h so that the write deadline starts when the response
// does, and so that responses say "Connection: close" once closing is set.
func (t httpTimeouts) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if t.write > 0 {
			rc.SetWriteDeadline(time.Time{}) // none while computing (a previous response's may remain)
		}
		if t.write > 0 || t.closing != nil {
			w = &onStart{ResponseWriter: w, rc: rc, start: t.start}
		}
		h.ServeHTTP(w, r)
	})
}

// start is called when a response starts, before its header is written.
func (t httpTimeouts) start(w http.ResponseWriter, rc *http.ResponseController) {
	if t.closing != nil && t.closing.Load() {
		w.Header().Set("Connection", "close")
	}
	if t.write > 0 {
		rc.SetWriteDeadline(time.Now().Add(t.write))
	}
}

// onStart is a ResponseWriter that calls start when the response starts.
// Unwrap gives the ResponseWriter under it, for http.ResponseController and
// the WebSocket upgrade (a hijacked connection has its deadlines cleared).
type onStart struct {
	http.ResponseWriter
	rc      *http.ResponseController
	start   func(http.ResponseWriter, *http.ResponseController)
	started bool
}

func (w *onStart) begin() {
	if !w.started {
		w.started = true
		w.start(w.ResponseWriter, w.rc)
	}
}

func (w *onStart) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.begin() // not for informational (1xx) headers
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *onStart) Write(b []byte) (int, error) {
	w.begin()
	return w.ResponseWriter.Write(b)
}

// Flush sends what was written so far.
func (w *onStart) Flush() {
	w.begin()
	w.rc.Flush()
}

// Unwrap returns the ResponseWriter under w.
func (w *onStart) Unwrap() http.ResponseWriter { return w.ResponseWriter }
