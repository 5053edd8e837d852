package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"syscall"
	"time"
)

// h1Pool is the gateway's HTTP/1.1 client to its backends: keep-alive
// connections kept idle per backend address, and each request run on the
// goroutine that proxies it, which writes the request and reads the
// answer's head itself. net/http's Transport hands every request to a
// writer goroutine of the connection and every answer over from a reader
// goroutine: two goroutine wake-ups on each request's path, which cost a
// proxy on a small (virtual) machine about as much as its own work.
type h1Pool struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle int // idle connections kept per address

	mu     sync.Mutex
	idle   map[string][]*h1Conn
	gone   map[string]bool // addresses whose idle connections were closed: none kept until one is asked for again
	closed bool
}

// h1Conn is one connection to a backend. It serves one request at a
// time, and keeps what reading an answer needs (the Response, its header
// map and body, the cache of header lines) for the next one.
type h1Conn struct {
	pool   *h1Pool
	addr   string
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool // it answered a request before

	resp   http.Response
	hdr    http.Header
	cache  lineCache
	status internCache
	body   h1Body
	lr     io.LimitedReader
}

// errStale: a connection taken from the idle ones was closed by the
// backend (its idle timeout, a restart) before it answered a byte.
var errStale = errors.New("gateway: the backend closed an idle connection")

// errUpgrade: a backend answered an inference or metadata request with 101.
var errUpgrade = errors.New("gateway: the backend switched protocols on a plain request")

func newH1Pool(dial func(ctx context.Context, network, addr string) (net.Conn, error), maxIdle int) *h1Pool {
	return &h1Pool{dial: dial, maxIdle: maxIdle, idle: map[string][]*h1Conn{}, gone: map[string]bool{}}
}

// get returns an idle connection to addr, or a new one.
func (p *h1Pool) get(ctx context.Context, addr string) (*h1Conn, error) {
	p.mu.Lock()
	delete(p.gone, addr)
	if cs := p.idle[addr]; len(cs) > 0 {
		c := cs[len(cs)-1]
		cs[len(cs)-1] = nil
		p.idle[addr] = cs[:len(cs)-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	nc, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// a tensor body goes in a few large writes rather than many 4 KiB ones
	return &h1Conn{pool: p, addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 64<<10), bw: bufio.NewWriterSize(nc, 64<<10),
		hdr: http.Header{}, cache: lineCache{}}, nil
}

// put keeps c idle for the next request to its address.
func (p *h1Pool) put(c *h1Conn) {
	c.reused = true
	p.mu.Lock()
	if !p.closed && !p.gone[c.addr] && len(p.idle[c.addr]) < p.maxIdle {
		p.idle[c.addr] = append(p.idle[c.addr], c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	c.nc.Close()
}

// closeIdle closes the idle connections to addr, and those of requests in
// flight to it as they finish, until a request asks for addr again ("" for
// every address, for good).
func (p *h1Pool) closeIdle(addr string) {
	p.mu.Lock()
	var cs []*h1Conn
	if addr == "" {
		p.closed = true
		for _, l := range p.idle {
			cs = append(cs, l...)
		}
		clear(p.idle)
	} else {
		cs = p.idle[addr]
		delete(p.idle, addr)
		p.gone[addr] = true
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.nc.Close()
	}
}

// roundTrip sends a request (method, the request URI, end-to-end headers,
// with auth, when set, in place of the Authorization header, the body) to
// addr and returns the answer, whose body must be closed; it reads only
// the answer's head. The answer (its header map and body) belongs to the
// connection: it is valid until its body is closed. A connection from the
// idle ones that turns out closed by the backend before answering is
// replaced by a new one, once, when retryStale (the request may have
// reached the backend: a crash looks the same as an idle timeout from
// here).
func (p *h1Pool) roundTrip(ctx context.Context, addr, method, uri string, h http.Header, auth string, body []byte, retryStale bool) (*http.Response, error) {
	for try := 0; ; try++ {
		c, err := p.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err := c.do(ctx, method, uri, h, auth, body)
		if err == nil {
			return resp, nil
		}
		c.nc.Close()
		if errors.Is(err, errStale) && retryStale && try == 0 && ctx.Err() == nil {
			continue
		}
		return nil, err
	}
}

// aLongTimeAgo is a deadline that makes blocked reads and writes return.
var aLongTimeAgo = time.Unix(1, 0)

// hopHeader reports whether k (canonical) is a hop-by-hop header, not forwarded.
func hopHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

func (c *h1Conn) do(ctx context.Context, method, uri string, h http.Header, auth string, body []byte) (*http.Response, error) {
	if strings.ContainsAny(uri, " \r\n") || strings.ContainsAny(method, " \r\n") || uri == "" {
		return nil, fmt.Errorf("gateway: bad request line %q %q", method, uri)
	}
	// the client leaving ends the exchange: blocked reads and writes return
	stop := c.watch(ctx)
	w := c.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(c.addr)
	w.WriteString("\r\n")
	for k, vs := range h {
		switch k {
		case "Host", "Content-Length", "Expect":
			continue // the gateway's own, or answered by the gateway
		case "Authorization":
			if auth != "" {
				continue
			}
		}
		if hopHeader(k) {
			continue
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") || strings.ContainsAny(k, " :\r\n") {
				continue // net/http's server lets none through; a token from the configuration might
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if auth != "" && !strings.ContainsAny(auth, "\r\n") {
		w.WriteString("Authorization: ")
		w.WriteString(auth)
		w.WriteString("\r\n")
	}
	if len(body) > 0 || method == http.MethodPost {
		w.WriteString("Content-Length: ")
		writeInt(w, int64(len(body)))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		w.Reset(c.nc)
		if ctx.Err() == nil && isClosedByPeer(err) {
			// The backend may have answered before reading the whole body
			// (413 for a body over its limit) and closed the connection:
			// its answer, read from what came before the close, is the
			// answer (the connection is not kept).
			c.nc.SetReadDeadline(time.Now().Add(earlyAnswerWait))
			if resp, rerr := c.readAnswer(method, stop); rerr == nil {
				c.body.keep = false
				return resp, nil
			}
		}
		stop.release()
		if c.reused && isClosedByPeer(err) {
			return nil, fmt.Errorf("%w: %v", errStale, err)
		}
		return nil, err
	}
	if _, err := c.br.Peek(1); err != nil {
		stop.release()
		if c.reused && ctx.Err() == nil && (err == io.EOF || isClosedByPeer(err)) {
			return nil, fmt.Errorf("%w: %v", errStale, err)
		}
		return nil, err
	}
	resp, err := c.readAnswer(method, stop)
	if err != nil {
		stop.release()
		return nil, err
	}
	return resp, nil
}

// writeInt writes n (not negative) in decimal, byte by byte (a slice
// given to bufio.Writer.Write escapes: it may go to the connection).
func writeInt(w *bufio.Writer, n int64) {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	for _, c := range d[i:] {
		w.WriteByte(c)
	}
}

// earlyAnswerWait bounds the wait for an answer that a backend sent
// before it closed the connection on a request still being written.
const earlyAnswerWait = time.Second

// readAnswer reads the answer's head (after any 1xx) into the
// connection's Response; its body, closed, gives the connection back to
// the pool or closes it, and releases stop.
func (c *h1Conn) readAnswer(method string, stop watch) (*http.Response, error) {
	var code, minor int
	var f headerFlags
	for {
		head, err := peekHead(c.br)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		i := bytes.Index(head, crlf)
		line := head[:i]
		// HTTP/1.x SSS[ reason]
		if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[7] < '0' || line[7] > '1' || line[8] != ' ' ||
			len(line) > 12 && line[12] != ' ' || bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, '\r') >= 0 {
			return nil, fmt.Errorf("%w: status line %q", errBadHead, line)
		}
		minor = int(line[7] - '0')
		code = 0
		for _, d := range line[9:12] {
			if d < '0' || d > '9' {
				return nil, fmt.Errorf("%w: status line %q", errBadHead, line)
			}
			code = code*10 + int(d-'0')
		}
		if code < 100 {
			return nil, fmt.Errorf("%w: status line %q", errBadHead, line)
		}
		if f, err = readHeaderLines(head[i+2:], c.hdr, c.cache); err != nil {
			return nil, err
		}
		if minor == 0 {
			f.chunked, f.otherEncoding = false, false // Transfer-Encoding is HTTP/1.1's (net/http ignores it too)
		}
		if f.badLength || f.otherEncoding {
			return nil, fmt.Errorf("%w: answer's body length", errBadHead)
		}
		c.br.Discard(len(head))
		c.resp = http.Response{Status: c.status.get(line[9:]), StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: minor,
			Header: c.hdr, ContentLength: f.contentLength}
		if code >= 200 || code == http.StatusSwitchingProtocols {
			break
		}
		// 1xx informational: the answer follows
	}
	if code == http.StatusSwitchingProtocols {
		return nil, errUpgrade
	}
	b := &c.body
	*b = h1Body{c: c, stop: stop, keep: minor == 1 && !f.connClose}
	switch {
	case method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified:
		c.resp.ContentLength = 0
		b.body = http.NoBody
	case f.chunked:
		b.body = httputil.NewChunkedReader(c.br)
		c.resp.TransferEncoding = []string{"chunked"}
		b.keep = false // what follows the last chunk (trailers) is not read
	case f.contentLength >= 0:
		c.lr = io.LimitedReader{R: c.br, N: f.contentLength}
		b.body = &c.lr
	default: // to the end of the connection
		b.body = c.br
		b.keep = false
	}
	c.resp.Close = !b.keep
	c.resp.Body = b
	return &c.resp, nil
}

// watch ends a request's exchange with a backend when its client leaves
// (its context ends): the connection's deadline is set in the past, so
// that blocked reads and writes return. release says whether the client
// was still there.
type watch struct {
	stop func() bool // context.AfterFunc's
	sc   *srvConn    // a client connection of the gateway's HTTP/1.1 server, which sets the deadline itself
}

func (c *h1Conn) watch(ctx context.Context) watch {
	if sc, ok := ctx.(*srvConn); ok {
		sc.attach(c.nc)
		return watch{sc: sc}
	}
	nc := c.nc
	return watch{stop: context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })}
}

func (w watch) release() bool {
	if w.sc != nil {
		return w.sc.detach()
	}
	return w.stop()
}

// isClosedByPeer reports whether err says the other end closed or reset
// the connection.
func isClosedByPeer(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF)
}

// h1Body is an answer's body; closing it returns the connection to the
// idle ones when the body was read to its end, the backend keeps the
// connection open and the client did not leave, and closes it otherwise.
type h1Body struct {
	body io.Reader
	c    *h1Conn
	stop watch
	keep bool
	eof  bool
	done bool
}

var errClosedAnswer = errors.New("gateway: read of a closed answer")

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, errClosedAnswer
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
		if lr, ok := b.body.(*io.LimitedReader); ok && lr.N > 0 {
			err = io.ErrUnexpectedEOF // the connection ended inside the body
			b.eof = false
		}
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	c := b.c
	if lr, ok := b.body.(*io.LimitedReader); ok && lr.N == 0 {
		b.eof = true // read to its end, whether or not the reader said EOF
	}
	if !b.eof {
		c.nc.Close() // net/http would read the rest of the body first
		b.stop.release()
		return nil
	}
	if b.stop.release() && b.keep { // the client had not left
		c.pool.put(c)
		return nil
	}
	c.nc.Close()
	return nil
}
