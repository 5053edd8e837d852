package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// oneShotBackend is a raw HTTP/1.1 backend that answers one request per
// connection and then closes it without saying so (no "Connection:
// close"), as a server does whose idle timeout ran out just as the next
// request came; it answers the polls too. It counts the connections.
func oneShotBackend(t *testing.T) (addr string, conns *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns = new(atomic.Int64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				body := fmt.Sprintf(`{"path":%q}`, req.URL.Path)
				// the polls are told: the test is about the gateway's own
				// pool, not net/http's Transport that polls
				conn := ""
				switch req.URL.Path {
				case "/v2/repository/index":
					body = `[{"name":"m","version":"1","state":"READY"}]`
					conn = "Connection: close\r\n"
				case "/v2/health/ready":
					conn = "Connection: close\r\n"
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", conn, len(body), body)
			}()
		}
	}()
	return l.Addr().String(), conns
}

// TestH1StaleConnection: a kept connection that the backend closed while
// idle is replaced by a new one, and the request answered, without a
// retry elsewhere or a failure counted; unless lost requests may not be
// retried (--no-retry-lost), when it is answered 502 as before.
func TestH1StaleConnection(t *testing.T) {
	for _, noRetry := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-retry-lost=%v", noRetry), func(t *testing.T) {
			addr, conns := oneShotBackend(t)
			g, err := New(Options{PollInterval: time.Hour, SlowStart: -1, NoRetryLost: noRetry})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.Close)
			g.SetEndpoints([]Endpoint{{HTTP: addr}})
			for deadline := time.Now().Add(10 * time.Second); len(g.index()) == 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("not ready")
				}
			}
			srv := httptest.NewServer(g.Handler())
			t.Cleanup(srv.Close)
			for i := range 5 {
				resp, err := http.Post(srv.URL+"/v2/models/m/infer", "application/json", strings.NewReader(inferBody))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := 200
				if noRetry && i > 0 {
					want = http.StatusBadGateway // the first request left a connection to reuse
				}
				if resp.StatusCode != want {
					t.Fatalf("request %d: %d %s, want %d", i, resp.StatusCode, b, want)
				}
				if want == 200 && string(b) != `{"path":"/v2/models/m/infer"}` {
					t.Fatalf("request %d: %s", i, b)
				}
				if noRetry && i == 1 {
					break
				}
			}
			if noRetry {
				return
			}
			if n := conns.Load(); n < 5 {
				t.Errorf("%d connections for 5 requests on a backend that closes each", n)
			}
			if s := g.Backends()[0]; !s.Ready || s.Ejected {
				t.Errorf("the backend was taken out: %+v", s)
			}
			if n := g.Backends()[0]; n.Outstanding != 0 {
				t.Errorf("%d requests still outstanding", n.Outstanding)
			}
		})
	}
}

// TestH1AbandonedRequest: a request whose client left before the answer
// does not leave its connection to the next request (which would read the
// abandoned answer): every later request gets its own.
func TestH1AbandonedRequest(t *testing.T) {
	release := make(chan struct{})
	var slow atomic.Bool
	slow.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"m","version":"1","state":"READY"}]`)
	})
	mux.HandleFunc("POST /v2/models/m/infer", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if slow.Load() && id == "abandoned" {
			<-release
		}
		io.WriteString(w, id)
	})
	f := &fake{name: "a", srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	g, url := newTestGateway(t, Options{}, f)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v2/models/m/infer?id=abandoned", strings.NewReader(inferBody))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the abandoned request was answered %d", resp.StatusCode)
	}
	cancel()
	close(release) // the backend answers the abandoned request now
	for i := range 20 {
		id := fmt.Sprintf("r%d", i)
		r := post(t, url+"/v2/models/m/infer?id="+id, "", nil, []byte(inferBody))
		if r.code != 200 || r.body != id {
			t.Fatalf("request %s: %d %q", id, r.code, r.body)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); g.Outstanding() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests outstanding", g.Outstanding())
		}
	}
}

// TestH1Informational: an informational answer (103 Early Hints) before
// the backend's answer is skipped; the client gets the answer.
func TestH1Informational(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"m","version":"1","state":"READY"}]`)
	})
	mux.HandleFunc("POST /v2/models/m/infer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</x>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "made")
	})
	f := &fake{name: "a", srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	_, url := newTestGateway(t, Options{}, f)
	for range 3 {
		if r := post(t, url+"/v2/models/m/infer", "", nil, []byte(inferBody)); r.code != http.StatusCreated || r.body != "made" {
			t.Fatalf("%d %q, want 201 made", r.code, r.body)
		}
	}
}

// TestH1PoolCloseIdle: a backend's connections are kept while it is in
// use, closed (idle ones at once, busy ones as they finish) once it is
// removed, and kept again if it comes back.
func TestH1PoolCloseIdle(t *testing.T) {
	addr, _ := oneShotBackend(t)
	p := newH1Pool((&net.Dialer{}).DialContext, 4)
	ctx := context.Background()
	a, err := p.get(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.get(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	p.put(a)
	idle := func() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.idle[addr]) }
	if n := idle(); n != 1 {
		t.Fatalf("%d idle, want 1", n)
	}
	p.closeIdle(addr) // the backend is removed
	p.put(b)          // a request in flight to it finishes
	if n := idle(); n != 0 {
		t.Fatalf("%d idle after the backend was removed, want 0", n)
	}
	if _, err := b.nc.Write([]byte("x")); err == nil {
		t.Error("the busy connection was not closed when it finished")
	}
	c, err := p.get(ctx, addr) // the backend is back
	if err != nil {
		t.Fatal(err)
	}
	p.put(c)
	if n := idle(); n != 1 {
		t.Fatalf("%d idle once the backend is back, want 1", n)
	}
	p.closeIdle("")
	if n := idle(); n != 0 {
		t.Fatalf("%d idle after closing all", n)
	}
}

// TestH1EarlyAnswer: a backend that answers before it has read the whole
// body (413 for a body over its limit, then closing the connection) is
// answered to the client as it was sent, on a new connection and on a
// connection reused from an earlier request, not as a failed backend
// (502), and the backend is not counted as failing.
func TestH1EarlyAnswer(t *testing.T) {
	const limit = 1 << 10
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"m","version":"1","state":"READY"}]`)
	})
	mux.HandleFunc("POST /v2/models/m/infer", func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			w.Header().Set("Connection", "close")
			http.Error(w, `{"error":"request body too large"}`, http.StatusRequestEntityTooLarge)
			return
		}
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"ok":true}`)
	})
	f := &fake{name: "a", srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	g, url := newTestGateway(t, Options{FailureThreshold: 1}, f)
	small := []byte(inferBody)
	for _, tc := range []struct {
		name     string
		warm     bool // a small request first, so the large one goes on a reused connection
		bodySize int
	}{
		{"fresh-64KiB", false, 64 << 10},
		{"reused-64KiB", true, 64 << 10},
		{"fresh-8MiB", false, 8 << 20},
		{"reused-8MiB", true, 8 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.h1.closeIdle(f.addr())
			if tc.warm {
				if r := post(t, url+"/v2/models/m/infer", "", nil, small); r.code != 200 {
					t.Fatalf("small request: %d %s", r.code, r.body)
				}
			}
			r := post(t, url+"/v2/models/m/infer", "", nil, bytes.Repeat([]byte{' '}, tc.bodySize))
			if r.code != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "too large") {
				t.Fatalf("large request: %d %s, want 413 from the backend", r.code, r.body)
			}
			if s := g.Backends()[0]; !s.Ready || s.Ejected {
				t.Fatalf("the backend was taken out: %+v", s)
			}
			if r := post(t, url+"/v2/models/m/infer", "", nil, small); r.code != 200 {
				t.Fatalf("small request after: %d %s", r.code, r.body)
			}
		})
	}
}
