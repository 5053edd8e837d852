package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// HTTPServer serves the gateway's HTTP API over HTTP/1.1 with its own
// request loop on each accepted connection: a request's head is read with
// the gateway's own parser into a Request and header map that the
// connection keeps, the handler runs on the connection's goroutine, and
// the answer is written through the connection's buffer. net/http's server
// does more per request (a Request, header map and context of its own, and
// a goroutine that watches the connection while the handler runs, woken
// and stopped on each request): a third of the gateway's CPU time per
// HTTP request on a 2-core machine (bench/results/gateway-overhead.md).
//
// The loop serves GET and POST over HTTP/1.1, with a Content-Length or a
// chunked body, and Expect: 100-continue. A connection whose next request
// is anything else (a WebSocket upgrade, another method, HTTP/1.0, a
// malformed head) is handed, with what was read of it, to the fallback
// net/http server, which serves it from then on.
//
// The header values of a request are shared with the connection's cache
// of header lines: a handler replaces a value (Header.Set), it does not
// change one in place.
//
// The client leaving is noticed as net/http does, but only for requests
// that take long enough to matter (watchAfter): their connection is read
// while the request runs, and the end of the connection cancels the
// request's context.
type HTTPServer struct {
	fallback *http.Server
	handler  http.Handler // the fallback's handler, for requests other than a model's
	models   http.HandlerFunc
	fl       *chanListener
	startFl  sync.Once

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*srvConn]struct{}
	shutdown  atomic.Bool
	noKeep    atomic.Bool
}

// NewHTTPServer returns a server of g's HTTP API that hands what its own
// loop does not serve to fallback, whose Handler must be g.Handler() (or
// wrap it). fallback's ReadHeaderTimeout, ReadTimeout and IdleTimeout
// apply to the connections of the loop too; its ErrorLog gets their errors.
func NewHTTPServer(g *Gateway, fallback *http.Server) *HTTPServer {
	if fallback.Handler == nil {
		fallback.Handler = g.Handler()
	}
	return &HTTPServer{fallback: fallback, handler: fallback.Handler, models: g.admitted(g.models),
		listeners: map[net.Listener]struct{}{}, conns: map[*srvConn]struct{}{}}
}

// Serve accepts connections on l until it is closed or the server shut
// down (http.ErrServerClosed).
func (s *HTTPServer) Serve(l net.Listener) error {
	s.startFl.Do(func() {
		s.fl = &chanListener{addr: l.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
		go s.fallback.Serve(s.fl)
	})
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		sc := s.newConn(nc)
		if sc == nil {
			nc.Close()
			continue
		}
		go sc.serve()
	}
}

// SetKeepAlivesEnabled(false) makes every answer from now on close its
// connection ("Connection: close").
func (s *HTTPServer) SetKeepAlivesEnabled(v bool) {
	s.noKeep.Store(!v)
	s.fallback.SetKeepAlivesEnabled(v)
}

// Shutdown stops accepting connections, closes the idle ones, and waits
// for the others to finish their request (they close after it), or for ctx.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.closeListeners()
	ferr := make(chan error, 1)
	go func() { ferr <- s.fallback.Shutdown(ctx) }()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeIdle() == 0 {
			break
		}
		select {
		case <-ctx.Done():
			<-ferr
			return ctx.Err()
		case <-t.C:
		}
	}
	return <-ferr
}

// Close closes the listeners and every connection at once.
func (s *HTTPServer) Close() error {
	s.shutdown.Store(true)
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return s.fallback.Close()
}

func (s *HTTPServer) closeListeners() {
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.startFl.Do(func() {}) // no fallback started from now on
	if s.fl != nil {
		s.fl.close()
	}
}

// closeIdle closes the connections waiting for a request and returns how
// many are left (busy).
func (s *HTTPServer) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.state.CompareAndSwap(connIdle, connClosed) {
			c.nc.Close()
			continue
		}
		n++
	}
	return n
}

func (s *HTTPServer) logf(format string, args ...any) {
	if s.fallback.ErrorLog != nil {
		s.fallback.ErrorLog.Printf(format, args...)
		return
	}
	slog.Default().Warn("gateway http: " + strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// chanListener is the fallback server's listener: the connections handed over.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) close() { l.once.Do(func() { close(l.done) }) }

func (l *chanListener) Close() error { l.close(); return nil }

func (l *chanListener) Addr() net.Addr { return l.addr }

// replayConn is a connection handed over with the bytes already read from it.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Connection states, for Shutdown.
const (
	connActive int32 = iota
	connIdle
	connClosed
)

// watchAfter is how long a request runs before its client's connection is
// watched for the client leaving.
const watchAfter = 5 * time.Millisecond

// srvConn is one client connection of HTTPServer. It is the context of
// its requests too: canceled when the client leaves (or the connection
// ends), and it ends the backend exchange of the request in flight at once
// then (attach, detach).
type srvConn struct {
	context.Context
	cancel context.CancelFunc
	s      *HTTPServer
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	state  atomic.Int32

	req   *http.Request
	url   url.URL
	hdr   http.Header
	cache lineCache
	uri   internCache
	body  reqBody
	w     h1Writer

	// the watch of the client's connection while a request runs
	timer    *time.Timer
	mu       sync.Mutex
	cond     sync.Cond
	armed    bool
	watching bool
	pending  [1]byte // a byte the watch read (the next request's first)
	npending int
	deadline bool     // a read deadline is set
	linger   bool     // close after reading what the client still sends
	left     bool     // the client left
	backend  net.Conn // the backend connection of the request in flight
}

func (s *HTTPServer) newConn(nc net.Conn) *srvConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &srvConn{Context: ctx, cancel: cancel, s: s, nc: nc, hdr: http.Header{}, cache: lineCache{}}
	c.cond.L = &c.mu
	c.br = bufio.NewReaderSize(connReader{c}, 64<<10)
	c.bw = bufio.NewWriterSize(nc, 16<<10)
	c.req = (&http.Request{}).WithContext(c)
	c.body.c = c
	c.w.c = c
	c.timer = time.AfterFunc(time.Hour, c.watch)
	c.timer.Stop()
	c.state.Store(connActive)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		cancel()
		return nil
	}
	s.conns[c] = struct{}{}
	return c
}

// connReader reads the connection, the watch's byte first.
type connReader struct{ c *srvConn }

func (r connReader) Read(p []byte) (int, error) {
	c := r.c
	if c.npending > 0 && len(p) > 0 {
		p[0] = c.pending[0]
		c.npending = 0
		return 1, nil
	}
	return c.nc.Read(p)
}

func (c *srvConn) close() {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	c.timer.Stop()
	c.cancel()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && c.linger {
		// The client may still be sending the body it was answered
		// without: closing now would reset the connection and could lose
		// the answer on its way. The end of the answer is sent, and what
		// comes is read for a while, as net/http does.
		cw.CloseWrite()
		c.nc.SetReadDeadline(time.Now().Add(lingerTime))
		io.Copy(io.Discard, c.nc)
	}
	c.nc.Close()
}

// lingerTime is how long a connection closed with a body unread is read
// before it is closed.
const lingerTime = 500 * time.Millisecond

// serve runs the connection's request loop.
func (c *srvConn) serve() {
	handedOver := false
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			c.s.logf("panic serving %v: %v", c.nc.RemoteAddr(), err)
		}
		if !handedOver {
			c.close()
		}
	}()
	s := c.s
	idle, header, read := s.fallback.IdleTimeout, s.fallback.ReadHeaderTimeout, s.fallback.ReadTimeout
	if idle == 0 {
		idle = read
	}
	if header == 0 {
		header = read
	}
	remote := c.nc.RemoteAddr().String()
	for first := true; ; first = false {
		// wait for the next request
		var dl time.Time
		switch {
		case idle > 0 && !first:
			dl = time.Now().Add(idle)
		case header > 0 && first:
			dl = time.Now().Add(header)
		}
		if !dl.IsZero() || c.deadline {
			c.nc.SetReadDeadline(dl)
			c.deadline = !dl.IsZero()
		}
		c.state.Store(connIdle) // Shutdown closes the connection while it waits
		if s.shutdown.Load() {
			return
		}
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		if !c.state.CompareAndSwap(connIdle, connActive) {
			return // closed by Shutdown
		}
		if header > 0 && !first {
			c.nc.SetReadDeadline(time.Now().Add(header))
			c.deadline = true
		}
		head, err := peekHead(c.br)
		if err != nil {
			if errors.Is(err, errBadHead) || errors.Is(err, errHeadTooLarge) {
				handedOver = c.handOver()
			}
			return
		}
		r, ok := c.readRequest(head)
		if !ok {
			handedOver = c.handOver()
			return
		}
		c.br.Discard(len(head))
		if read > 0 {
			c.nc.SetReadDeadline(time.Now().Add(read)) // the body
			c.deadline = true
		}
		if !c.run(r, remote) {
			return
		}
	}
}

// handOver gives the connection, with the bytes read of it, to the
// fallback server.
func (c *srvConn) handOver() bool {
	s := c.s
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	c.timer.Stop()
	c.cancel()
	buf, _ := c.br.Peek(c.br.Buffered())
	rc := &replayConn{Conn: c.nc, buf: bytes.Clone(buf)}
	c.nc.SetReadDeadline(time.Time{})
	select {
	case s.fl.ch <- rc:
		return true
	case <-s.fl.done:
		return false
	}
}

// readRequest reads a request head into the connection's Request; false
// when the request is not for the loop (see HTTPServer).
func (c *srvConn) readRequest(head []byte) (*http.Request, bool) {
	i := bytes.Index(head, crlf)
	line := head[:i]
	var method string
	switch {
	case bytes.HasPrefix(line, []byte("POST ")):
		method = http.MethodPost
	case bytes.HasPrefix(line, []byte("GET ")):
		method = http.MethodGet
	default:
		return nil, false
	}
	rest := line[len(method)+1:]
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 || string(rest[sp+1:]) != "HTTP/1.1" {
		return nil, false
	}
	uri := rest[:sp]
	if uri[0] != '/' || bytes.IndexByte(uri, '%') >= 0 || bytes.IndexByte(uri, '#') >= 0 {
		return nil, false // escaped paths and the rest: net/http's
	}
	for _, b := range uri {
		if b <= ' ' || b == 0x7f {
			return nil, false
		}
	}
	f, err := readHeaderLines(head[i+2:], c.hdr, c.cache)
	// a chunked body: a POST's, with Transfer-Encoding: chunked alone and no Content-Length
	chunked := err == nil && f.chunked && f.contentLength < 0 && method == http.MethodPost
	if err != nil || f.upgrade || f.connOther || f.expect || f.hasTransferEnc && !chunked || f.badLength || !f.hasHost ||
		len(c.hdr["Host"]) != 1 || method == http.MethodPost && f.contentLength < 0 && !chunked ||
		method == http.MethodGet && f.contentLength > 0 {
		return nil, false
	}
	r := c.req
	u := c.uri.get(uri)
	path, query, _ := strings.Cut(u, "?")
	c.url = url.URL{Path: path, RawQuery: query}
	r.Method = method
	r.URL = &c.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = c.hdr
	r.Host = c.hdr["Host"][0]
	delete(c.hdr, "Host")
	r.RequestURI = u
	r.Close = f.connClose
	r.ContentLength = max(f.contentLength, 0)
	r.TransferEncoding = nil
	c.body.n = r.ContentLength
	c.body.armed, c.body.cr, c.body.end = false, nil, false
	if chunked {
		r.ContentLength = -1
		r.TransferEncoding = chunkedEncoding
		delete(c.hdr, "Transfer-Encoding")
		c.body.cr = httputil.NewChunkedReader(c.br)
	}
	// Expect: 100-continue is answered when the handler reads the body
	c.body.expect = f.expectContinue && (r.ContentLength > 0 || chunked)
	if r.ContentLength > 0 || chunked {
		r.Body = &c.body
	} else {
		r.Body = http.NoBody
	}
	r.Form, r.PostForm, r.MultipartForm, r.Trailer, r.TLS, r.Response, r.Pattern = nil, nil, nil, nil, nil, nil, ""
	return r, true
}

// run serves one request; false when the connection is to be closed after.
func (c *srvConn) run(r *http.Request, remote string) (keep bool) {
	r.RemoteAddr = remote
	w := &c.w
	w.reset()
	if r.ContentLength == 0 {
		c.arm()
	}
	func() {
		defer func() {
			if err := recover(); err != nil {
				if err != http.ErrAbortHandler {
					c.s.logf("panic serving %v: %v", remote, err)
				}
				w.closeAfter, w.broken = true, true
			}
		}()
		if strings.HasPrefix(r.URL.Path, "/v2/models/") && !strings.Contains(r.URL.Path, "/.") && !strings.Contains(r.URL.Path, "//") {
			c.s.models(w, r)
		} else {
			c.s.handler.ServeHTTP(w, r)
		}
	}()
	c.disarm()
	if w.broken || c.left {
		return false
	}
	w.finish()
	if c.body.cr != nil && !c.body.end {
		w.closeAfter = true // a chunked body not read to its end
		c.linger = !c.body.expect
	} else if n := c.body.n; n > 0 {
		// the handler did not read the whole body: the rest is skipped,
		// up to net/http's limit, or the connection closed (also when the
		// client waits to be told to send it)
		if n > 256<<10 || c.body.expect {
			w.closeAfter = true
			c.linger = !c.body.expect
		} else if _, err := c.br.Discard(int(n)); err != nil {
			w.closeAfter = true
		}
	}
	if err := c.bw.Flush(); err != nil {
		return false
	}
	return !w.closeAfter && !r.Close && !c.s.noKeep.Load() && !c.s.shutdown.Load()
}

// arm starts the watch of the client's connection after watchAfter, once
// the request's body was read (nothing of the connection is read by the
// request from then on), when nothing more was sent (pipelined).
func (c *srvConn) arm() {
	if c.br.Buffered() > 0 {
		return
	}
	c.mu.Lock()
	c.armed = true
	c.mu.Unlock()
	c.timer.Reset(watchAfter)
}

// disarm ends the watch; after it the connection is the loop's again.
func (c *srvConn) disarm() {
	c.mu.Lock()
	if !c.armed {
		c.mu.Unlock()
		return
	}
	c.armed = false
	c.mu.Unlock()
	c.timer.Stop()
	// a watch may run even when this request's timer never fired: one of
	// an earlier request's, late, that found this one armed
	c.mu.Lock()
	for c.watching {
		c.nc.SetReadDeadline(aLongTimeAgo)
		c.deadline = true
		c.cond.Wait()
	}
	c.mu.Unlock()
}

// watch reads the client's connection while a request runs: a byte is
// kept for the next request, the connection's end cancels the request.
func (c *srvConn) watch() {
	c.mu.Lock()
	if !c.armed || c.watching {
		c.mu.Unlock()
		return
	}
	c.watching = true
	c.mu.Unlock()
	n, err := c.nc.Read(c.pending[:])
	c.mu.Lock()
	c.watching = false
	if n > 0 {
		c.npending = 1
	}
	left := err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	if left {
		c.left = true
		if c.backend != nil {
			c.backend.SetDeadline(aLongTimeAgo)
		}
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	if left {
		c.cancel()
	}
}

// attach makes nc the backend connection of the request in flight: the
// client leaving ends its exchange.
func (c *srvConn) attach(nc net.Conn) {
	c.mu.Lock()
	c.backend = nc
	if c.left {
		nc.SetDeadline(aLongTimeAgo)
	}
	c.mu.Unlock()
}

// detach ends attach; it reports whether the client is still there.
func (c *srvConn) detach() bool {
	c.mu.Lock()
	c.backend = nil
	left := c.left
	c.mu.Unlock()
	return !left
}

// reqBody is a request's body: Content-Length bytes of the connection.
type reqBody struct {
	c      *srvConn
	n      int64 // bytes left (without cr)
	cr     io.Reader
	end    bool // cr's body and trailer were read
	armed  bool
	expect bool // the client waits for "100 Continue" before it sends the body
}

// chunkedEncoding is the TransferEncoding of a request with a chunked body.
var chunkedEncoding = []string{"chunked"}

var errAnsweredBody = errors.New("gateway: the body of an answered request")

func (b *reqBody) Read(p []byte) (int, error) {
	if b.cr == nil && b.n <= 0 || b.cr != nil && b.end {
		b.done()
		return 0, io.EOF
	}
	if b.expect {
		b.expect = false
		if b.c.w.wrote {
			return 0, errAnsweredBody
		}
		b.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := b.c.bw.Flush(); err != nil {
			return 0, err
		}
	}
	if b.cr != nil {
		n, err := b.cr.Read(p)
		if err == io.EOF {
			if err = b.trailer(); err != nil {
				return n, err
			}
			b.end = true
			b.done()
			err = io.EOF
		}
		return n, err
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	var n int
	var err error
	if b.c.br.Buffered() == 0 && len(p) >= 4<<10 {
		n, err = connReader{b.c}.Read(p) // straight into p, not through the buffer
	} else {
		n, err = b.c.br.Read(p)
	}
	b.n -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if b.n == 0 && err == nil {
		b.done()
	}
	return n, err
}

// trailer reads (and drops) the trailer of a chunked body, up to its
// empty line.
func (b *reqBody) trailer() error {
	for range 100 {
		line, err := b.c.br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if len(line) <= 2 && (string(line) == "\r\n" || string(line) == "\n") {
			return nil
		}
	}
	return errors.New("gateway: a chunked body's trailer is too long")
}

func (b *reqBody) done() {
	if !b.armed {
		b.armed = true
		b.c.arm()
	}
}

func (b *reqBody) Close() error { return nil }

// h1Writer is the http.ResponseWriter of the loop's requests: the status
// line and headers go into the connection's buffer when the answer
// starts; a body without Content-Length is sent chunked.
type h1Writer struct {
	c          *srvConn
	h          http.Header
	wrote      bool
	status     int
	chunked    bool
	noBody     bool
	cl, n      int64
	closeAfter bool
	broken     bool  // a panic: the answer is cut off
	writeErr   error // writing to the client failed
}

func (w *h1Writer) reset() {
	if w.h == nil {
		w.h = http.Header{}
	}
	clear(w.h)
	w.wrote, w.status, w.chunked, w.noBody, w.cl, w.n, w.closeAfter, w.broken, w.writeErr = false, 0, false, false, -1, 0, false, false, nil
}

func (w *h1Writer) Header() http.Header { return w.h }

var zeroLength = []string{"0"}

func (w *h1Writer) WriteHeader(code int) {
	if w.wrote || code < 200 || code > 999 {
		return // informational answers are not sent
	}
	w.wrote, w.status = true, code
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteByte(byte('0' + code/100))
	bw.WriteByte(byte('0' + code/10%10))
	bw.WriteByte(byte('0' + code%10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
	w.noBody = code == http.StatusNoContent || code == http.StatusNotModified
	if vs := w.h["Content-Length"]; len(vs) == 1 {
		if n, ok := parseLength(vs[0]); ok {
			w.cl = n
		} else {
			delete(w.h, "Content-Length")
		}
	}
	if w.cl < 0 && !w.noBody {
		w.chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.c.s.noKeep.Load() || w.c.s.shutdown.Load() || w.c.req.Close {
		w.closeAfter = true
	}
	if vs := w.h["Connection"]; len(vs) > 0 {
		for _, v := range vs {
			if asciiEqualFold(v, "close") {
				w.closeAfter = true
			}
		}
	}
	for k, vs := range w.h {
		if k == "Transfer-Encoding" || k == "Connection" || strings.ContainsAny(k, " :\r\n") {
			continue
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.c.bw
	if w.chunked {
		started := false
		for shift := 60; shift >= 0; shift -= 4 {
			if d := len(p) >> shift & 15; d != 0 || started || shift == 0 {
				started = true
				bw.WriteByte("0123456789abcdef"[d])
			}
		}
		bw.WriteString("\r\n")
		n, err := bw.Write(p)
		bw.WriteString("\r\n")
		w.n += int64(n)
		if err != nil {
			w.writeErr = err
		}
		return n, err
	}
	if w.n+int64(len(p)) > w.cl {
		n, _ := bw.Write(p[:w.cl-w.n])
		w.n += int64(n)
		return n, http.ErrContentLength
	}
	n, err := bw.Write(p)
	w.n += int64(n)
	if err != nil {
		w.writeErr = err
	}
	return n, err
}

// Flush sends what was written so far.
func (w *h1Writer) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	w.c.bw.Flush()
}

// finish ends the answer.
func (w *h1Writer) finish() {
	if !w.wrote {
		if _, ok := w.h["Content-Length"]; !ok {
			w.h["Content-Length"] = zeroLength
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked {
		w.c.bw.WriteString("0\r\n\r\n")
	}
	if w.cl >= 0 && w.n < w.cl {
		w.closeAfter = true // the client waits for bytes that will not come
	}
}
