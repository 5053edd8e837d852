package gateway

import (
	"bufio"
	"context"
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

// h1Conn is one connection to a backend.
type h1Conn struct {
	pool   *h1Pool
	addr   string
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool // it answered a request before
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
	return &h1Conn{pool: p, addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 64<<10), bw: bufio.NewWriterSize(nc, 64<<10)}, nil
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
// the body) to addr and returns the answer, whose body must be closed; it
// reads only the answer's head. A connection from the idle ones that
// turns out closed by the backend before answering is replaced by a new
// one, once, when retryStale (the request may have reached the backend:
// a crash looks the same as an idle timeout from here).
func (p *h1Pool) roundTrip(ctx context.Context, addr, method, uri string, h http.Header, body []byte, retryStale bool) (*http.Response, error) {
	for try := 0; ; try++ {
		c, err := p.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err := c.do(ctx, method, uri, h, body)
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

// methodReqs are the requests http.ReadResponse is told an answer is to
// (it reads only their method).
var methodReqs = map[string]*http.Request{http.MethodGet: {Method: http.MethodGet}, http.MethodPost: {Method: http.MethodPost}}

func (c *h1Conn) do(ctx context.Context, method, uri string, h http.Header, body []byte) (*http.Response, error) {
	if strings.ContainsAny(uri, " \r\n") || strings.ContainsAny(method, " \r\n") {
		return nil, fmt.Errorf("gateway: bad request line %q %q", method, uri)
	}
	// the client leaving ends the exchange: blocked reads and writes return
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
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
	if len(body) > 0 || method == http.MethodPost {
		var n [20]byte
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(n[:0], int64(len(body)), 10))
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
				resp.Body.(*h1Body).keep = false
				return resp, nil
			}
		}
		stop()
		if c.reused && isClosedByPeer(err) {
			return nil, fmt.Errorf("%w: %v", errStale, err)
		}
		return nil, err
	}
	if _, err := c.br.Peek(1); err != nil {
		stop()
		if c.reused && ctx.Err() == nil && (err == io.EOF || isClosedByPeer(err)) {
			return nil, fmt.Errorf("%w: %v", errStale, err)
		}
		return nil, err
	}
	resp, err := c.readAnswer(method, stop)
	if err != nil {
		stop()
		return nil, err
	}
	return resp, nil
}

// earlyAnswerWait bounds the wait for an answer that a backend sent
// before it closed the connection on a request still being written.
const earlyAnswerWait = time.Second

// readAnswer reads the answer's head (after any 1xx); its body, closed,
// gives the connection back to the pool or closes it, and calls stop.
func (c *h1Conn) readAnswer(method string, stop func() bool) (*http.Response, error) {
	req := methodReqs[method]
	if req == nil {
		req = &http.Request{Method: method}
	}
	resp, err := http.ReadResponse(c.br, req)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(c.br, req) // 1xx informational: the answer follows
	}
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		err = errUpgrade
	}
	if err != nil {
		return nil, err
	}
	resp.Body = &h1Body{body: resp.Body, c: c, stop: stop, keep: !resp.Close}
	return resp, nil
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
	body io.ReadCloser
	c    *h1Conn
	stop func() bool
	keep bool
	eof  bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	if !b.eof {
		b.c.nc.Close() // net/http would read the rest of the body first
		b.body.Close()
		b.stop()
		return nil
	}
	b.body.Close()
	if b.stop() && b.keep { // stop: the client had not left
		b.c.pool.put(b.c)
		return nil
	}
	b.c.nc.Close()
	return nil
}
