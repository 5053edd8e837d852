package main

import (
	"io"
	"net/http"
	"time"
)

// httpTimeouts are kiln serve's HTTP connection timeouts, made to fit
// inference: a request must arrive within read (so that a client sending
// its body slowly cannot hold a connection for ever), and a response be
// written within write from its first byte (so that a client not reading
// cannot either), while the time a request waits in a queue and runs, which
// can be long, counts against neither. A WebSocket stream, once upgraded,
// has no deadline: it is pinged instead.
type httpTimeouts struct {
	read, write, idle time.Duration
}

// server returns an http.Server for h with the timeouts.
func (t httpTimeouts) server(h http.Handler) *http.Server {
	header := 10 * time.Second
	if t.read > 0 {
		header = min(header, t.read)
	}
	return &http.Server{
		Handler: t.handler(h), ReadHeaderTimeout: header,
		// The whole request, headers and body; the handler lifts the
		// deadline once it has read the body (see handler).
		ReadTimeout: t.read,
		// WriteTimeout stays 0: it would count from the end of the request
		// headers, computing included; handler sets the deadline when the
		// response starts instead.
		IdleTimeout: t.idle,
	}
}

// handler wraps h so that the read deadline the server set for the request
// is lifted once its body has been read (the server keeps reading the
// connection in the background to notice a client that goes away: with the
// deadline passed, that read would cancel a request still computing), and
// so that the write deadline starts when the response does.
func (t httpTimeouts) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if t.read > 0 {
			if r.Body == nil || r.Body == http.NoBody {
				rc.SetReadDeadline(time.Time{})
			} else {
				r.Body = &liftOnEOF{ReadCloser: r.Body, lift: func() { rc.SetReadDeadline(time.Time{}) }}
			}
		}
		if t.write > 0 {
			rc.SetWriteDeadline(time.Time{}) // none while computing (a previous response's may remain)
			w = &writeDeadline{ResponseWriter: w, rc: rc, d: t.write}
		}
		h.ServeHTTP(w, r)
	})
}

// liftOnEOF is a request body that calls lift once it has been read to its
// end.
type liftOnEOF struct {
	io.ReadCloser
	lift   func()
	lifted bool
}

func (b *liftOnEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		b.lift()
	}
	return n, err
}

// writeDeadline is a ResponseWriter that sets the write deadline d ahead
// when the response starts. Unwrap gives the ResponseWriter under it, for
// http.ResponseController and the WebSocket upgrade (a hijacked connection
// has its deadlines cleared).
type writeDeadline struct {
	http.ResponseWriter
	rc      *http.ResponseController
	d       time.Duration
	started bool
}

func (w *writeDeadline) start() {
	if !w.started {
		w.started = true
		w.rc.SetWriteDeadline(time.Now().Add(w.d))
	}
}

func (w *writeDeadline) WriteHeader(code int) {
	w.start()
	w.ResponseWriter.WriteHeader(code)
}

func (w *writeDeadline) Write(b []byte) (int, error) {
	w.start()
	return w.ResponseWriter.Write(b)
}

// Flush sends what was written so far.
func (w *writeDeadline) Flush() {
	w.start()
	w.rc.Flush()
}

// Unwrap returns the ResponseWriter under w.
func (w *writeDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }
