package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// exchange sends raw on one connection to addr and reads n answers
// (bodies included); eof reports whether the server closed the connection
// after them.
func exchange(t *testing.T, addr, raw string, n int) (answers []string, codes []int, resps []*http.Response, eof bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	continues := 0
	for range n {
		resp, err := http.ReadResponse(br, nil)
		for err == nil && resp.StatusCode == http.StatusContinue {
			continues++
			resp, err = http.ReadResponse(br, nil)
		}
		if err != nil {
			t.Fatalf("answer %d: %v", len(answers), err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d's body: %v", len(answers), err)
		}
		answers = append(answers, string(b))
		if continues > 0 {
			resp.Header.Set("X-Test-Continues", strconv.Itoa(continues)) // 100 Continue answers before it
			continues = 0
		}
		codes = append(codes, resp.StatusCode)
		resps = append(resps, resp)
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = br.ReadByte()
	return answers, codes, resps, err == io.EOF
}

func shaOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestHTTPServer: the gateway's HTTP/1.1 loop answers plain requests
// itself, on kept-alive and pipelined connections, and hands the rest
// (chunked bodies, Expect, HTTP/1.0, malformed heads) to net/http's
// server, which answers them as before; the body reaches the backend
// unchanged either way.
func TestHTTPServer(t *testing.T) {
	f := newFake(t, "a", "m")
	_, url := newTestGateway(t, Options{MaxRequestBytes: 1 << 20}, f)
	addr := strings.TrimPrefix(url, "http://")
	body := inferBody
	post := func(extra string) string {
		return "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n" + extra +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	okAnswer := fmt.Sprintf(`{"backend":"a","path":"/v2/models/m/infer","sha":%q}`, shaOf(body))
	chunked := "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	for _, tc := range []struct {
		name  string
		raw   string
		codes []int
		want  []string // answers ("" not checked)
		eof   bool     // the server closes after
	}{
		{"keep-alive", post("") + post(""), []int{200, 200}, []string{okAnswer, okAnswer}, false},
		{"pipelined with a GET", post("") + "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n\r\n" + post(""), []int{200, 200, 200}, []string{okAnswer, "", okAnswer}, false},
		{"client closes", post("Connection: close\r\n"), []int{200}, []string{okAnswer}, true},
		{"chunked body", chunked + post(""), []int{200, 200}, []string{okAnswer, okAnswer}, false},
		{"Expect: 100-continue", post("Expect: 100-continue\r\n"), []int{200}, []string{okAnswer}, false},
		{"Expect: 100-continue, body over the limit", "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n",
			[]int{413}, nil, true},
		{"chunked body with a trailer and Expect: 100-continue", strings.Replace(chunked, "chunked\r\n", "chunked\r\nExpect: 100-continue\r\n", 1)[:len(chunked)+len("Expect: 100-continue\r\n")-2] + "X-T: 1\r\n\r\n" + post(""),
			[]int{200, 200}, []string{okAnswer, okAnswer}, false},
		{"chunked body over the limit", "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", 2<<20, strings.Repeat("x", 2<<20)) + "0\r\n\r\n",
			[]int{413}, nil, true},
		{"Expect: other (net/http)", post("Expect: other\r\n"), []int{417}, nil, true},
		{"HTTP/1.0 (net/http)", strings.Replace(post(""), "HTTP/1.1", "HTTP/1.0", 1), []int{200}, []string{okAnswer}, true},
		{"lower-case header keys", "POST /v2/models/m/infer HTTP/1.1\r\nhost: gw\r\ncontent-length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body,
			[]int{200}, []string{okAnswer}, false},
		{"no Host (net/http)", "GET /v2/health/live HTTP/1.1\r\n\r\n", []int{400}, nil, true},
		{"malformed (net/http)", "GET\r\n\r\n", []int{400}, nil, true},
		{"unknown route, then another request", "GET /nope HTTP/1.1\r\nHost: gw\r\n\r\n" + post(""), []int{404, 200}, []string{"", okAnswer}, false},
		{"wrong method with a body left unread", strings.Replace(post(""), "/infer", "/ready", 1) + post(""), []int{405, 200}, []string{"", okAnswer}, false},
		{"body over the limit", "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Length: 2000000\r\n\r\n", []int{413}, nil, true},
		{"model not served", strings.Replace(post(""), "/m/", "/other/", 1), []int{503}, nil, false},
		{"query and version kept", strings.Replace(post(""), "/v2/models/m/infer", "/v2/models/m/versions/1/infer?x=1", 1), []int{200},
			[]string{fmt.Sprintf(`{"backend":"a","path":"/v2/models/m/versions/1/infer","sha":%q}`, shaOf(body))}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, codes, resps, eof := exchange(t, addr, tc.raw, len(tc.codes))
			for i := range tc.codes {
				if codes[i] != tc.codes[i] {
					t.Fatalf("answer %d: %d %s, want %d", i, codes[i], got[i], tc.codes[i])
				}
				if i < len(tc.want) && tc.want[i] != "" && got[i] != tc.want[i] {
					t.Fatalf("answer %d: %s, want %s", i, got[i], tc.want[i])
				}
			}
			if eof != tc.eof {
				t.Errorf("connection closed after: %v, want %v", eof, tc.eof)
			}
			if want := strings.Contains(tc.name, "100-continue") && tc.codes[0] == 200; (resps[0].Header.Get("X-Test-Continues") == "1") != want {
				t.Errorf("100 Continue before the answer: %q, want %v", resps[0].Header.Get("X-Test-Continues"), want)
			}
		})
	}
}

// TestHTTPServerChunkedAnswer: an answer without Content-Length from the
// backend goes to the client chunked, and the connection stays usable.
func TestHTTPServerChunkedAnswer(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"m","version":"1","state":"READY"}]`)
	})
	big := strings.Repeat("0123456789", 10000)
	mux.HandleFunc("POST /v2/models/m/infer", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.(http.Flusher).Flush() // no Content-Length: chunked
		io.WriteString(w, big)
	})
	f := &fake{name: "a", srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	_, url := newTestGateway(t, Options{}, f)
	req := "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}"
	got, codes, resps, eof := exchange(t, strings.TrimPrefix(url, "http://"), req+req, 2)
	for i := range got {
		if codes[i] != 200 || got[i] != big {
			t.Fatalf("answer %d: %d, %d bytes", i, codes[i], len(got[i]))
		}
		if te := resps[i].TransferEncoding; len(te) != 1 || te[0] != "chunked" {
			t.Errorf("answer %d: Transfer-Encoding %q, want chunked", i, te)
		}
	}
	if eof {
		t.Error("the connection was closed")
	}
}

// TestHTTPServerDrain: with keep-alives off every answer closes its
// connection; Shutdown closes the idle connections, waits for a request
// in flight, and Serve returns http.ErrServerClosed.
func TestHTTPServerDrain(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"m","version":"1","state":"READY"}]`)
	})
	mux.HandleFunc("POST /v2/models/m/infer", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("slow") != "" {
			<-release
		}
		io.WriteString(w, "done")
	})
	f := &fake{name: "a", srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	g, _ := newTestGateway(t, Options{}, f)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer(g, &http.Server{Handler: g.Handler()})
	served := make(chan error, 1)
	go func() { served <- hs.Serve(l) }()
	addr := l.Addr().String()
	req := "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}"

	idle, err := net.Dial("tcp", addr) // a kept connection, idle when Shutdown comes
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, req)
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("idle connection's request: %v %v", resp, err)
	}
	ibr.Discard(4)

	hs.SetKeepAlivesEnabled(false)
	got, codes, resps, eof := exchange(t, addr, req, 1)
	if codes[0] != 200 || got[0] != "done" || !eof || !resps[0].Close {
		t.Fatalf("with keep-alives off: %d %q, closed %v, Connection: close %v", codes[0], got[0], eof, resps[0].Close)
	}

	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, strings.Replace(req, "infer", "infer?slow=1", 1))
	for deadline := time.Now().Add(5 * time.Second); g.Outstanding() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow request did not reach the backend")
		}
	}
	shut := make(chan error, 1)
	go func() { shut <- hs.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("the idle connection was not closed: %v", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with a request in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the request in flight: %v %v", resp, err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// rawBackend is a KServe v2 backend that answers from fixed bytes and
// allocates nothing per request: every request's head is read with
// peekHead, its body skipped.
func rawBackend(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	answer := func(body string) []byte {
		return []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	}
	index := answer(`[{"name":"m","version":"1","state":"READY"}]`)
	ready := answer("")
	infer := answer(`{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[1]}]}`)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 64<<10)
				h := http.Header{}
				cache := lineCache{}
				for {
					head, err := peekHead(br)
					if err != nil {
						return
					}
					i := bytes.Index(head, crlf)
					f, err := readHeaderLines(head[i+2:], h, cache)
					if err != nil {
						return
					}
					line := head[:i]
					br.Discard(len(head))
					if f.contentLength > 0 {
						br.Discard(int(f.contentLength))
					}
					switch {
					case bytes.Contains(line, []byte("/v2/repository/index")):
						c.Write(index)
					case bytes.Contains(line, []byte("/infer")):
						c.Write(infer)
					default:
						c.Write(ready)
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestHTTPServerAllocs: a request through the gateway's HTTP/1.1 loop to a
// backend, in the steady state (kept connections both ways), allocates
// nothing: the client and the backend here allocate nothing either, and
// AllocsPerRun counts the whole process.
func TestHTTPServerAllocs(t *testing.T) {
	backend := rawBackend(t)
	g, err := New(Options{PollInterval: time.Hour, SlowStart: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	g.SetEndpoints([]Endpoint{{HTTP: backend}})
	for deadline := time.Now().Add(10 * time.Second); len(g.index()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
	}
	url := serveTest(t, g)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := strings.Repeat(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]}`, 100)
	req := []byte("POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	br := bufio.NewReaderSize(c, 64<<10)
	h := http.Header{}
	cache := lineCache{}
	var failed error
	one := func() {
		if _, err := c.Write(req); err != nil {
			failed = err
			return
		}
		head, err := peekHead(br)
		if err != nil {
			failed = err
			return
		}
		i := bytes.Index(head, crlf)
		f, err := readHeaderLines(head[i+2:], h, cache)
		if err != nil || !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) || f.contentLength <= 0 {
			failed = fmt.Errorf("answer %q: %v", head, err)
			return
		}
		br.Discard(len(head))
		br.Discard(int(f.contentLength))
	}
	for range 100 { // warm up: connections, pools, caches, metric children
		one()
	}
	allocs := testing.AllocsPerRun(500, one)
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs > 0 {
		t.Errorf("%.2f allocations per request, want 0", allocs)
	}
}

// TestHTTPServerWatch: requests slower and faster than watchAfter, one
// after the other on kept connections, so that the watch of the client's
// connection starts and stops (or comes late) around them: every request
// reaches the gateway whole (a byte the watch read is the next request's).
func TestHTTPServerWatch(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"m","version":"1","state":"READY"}]`)
	})
	mux.HandleFunc("POST /v2/models/m/infer", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(time.Duration(rand.IntN(int(2*watchAfter/time.Microsecond))) * time.Microsecond)
		io.WriteString(w, "ok")
	})
	f := &fake{name: "a", srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	_, url := newTestGateway(t, Options{}, f)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				resp, err := http.Post(url+"/v2/models/m/infer", "application/json", strings.NewReader(inferBody))
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ok" {
					t.Errorf("request %d: %d %s", i, resp.StatusCode, b)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestHTTPServerTimeouts: the fallback server's ReadHeaderTimeout and
// IdleTimeout apply to the loop's connections: a head that does not come
// whole, and a kept connection left idle, are closed.
func TestHTTPServerTimeouts(t *testing.T) {
	f := newFake(t, "a", "m")
	g, _ := newTestGateway(t, Options{}, f)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer(g, &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 100 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	for _, tc := range []struct {
		name, send string
		answers    int
	}{
		{"partial head", "GET /v2/health/live HTTP/1.1\r\nHo", 0},
		{"idle after an answer", "GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n\r\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.send)
			c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound for the test, far above the timeouts
			br := bufio.NewReader(c)
			for range tc.answers {
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("answer: %v %v", resp, err)
				}
				io.Copy(io.Discard, resp.Body)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("the connection was not closed by the server: %v", err)
			}
		})
	}
}

// TestHTTPServerClientLeavesAnswer: a client that leaves while a large
// answer is copied to it is not the backend's failure: the backend stays
// in rotation (one failure would eject it here), and the next request is
// answered.
func TestHTTPServerClientLeavesAnswer(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 32<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"m","version":"1","state":"READY"}]`)
	})
	mux.HandleFunc("POST /v2/models/m/infer", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("big") == "" {
			io.WriteString(w, "small")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.Write(big)
	})
	f := &fake{name: "a", srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	g, url := newTestGateway(t, Options{FailureThreshold: 1}, f)
	for i := range 3 {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "POST /v2/models/m/infer?big=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("round %d: %v %v", i, resp, err)
		}
		c.Close() // without reading the answer
		for deadline := time.Now().Add(10 * time.Second); g.Outstanding() != 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d requests outstanding", i, g.Outstanding())
			}
		}
		if s := g.Backends()[0]; !s.Ready || s.Ejected {
			t.Fatalf("round %d: the backend was taken out: %+v", i, s)
		}
		if r := post(t, url+"/v2/models/m/infer", "", nil, []byte("{}")); r.code != 200 || r.body != "small" {
			t.Fatalf("round %d: the next request: %d %s", i, r.code, r.body)
		}
	}
}

// TestHTTPServerTruncatedAnswer: a backend that closes its connection in
// the middle of an answer's body: the client gets the head and what came,
// then the end of its connection (not a complete-looking answer), and the
// next request is answered on a new backend connection.
func TestHTTPServerTruncatedAnswer(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"m","version":"1","state":"READY"}]`)
	})
	mux.HandleFunc("POST /v2/models/m/infer", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("cut") == "" {
			io.WriteString(w, "whole")
			return
		}
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "only ten b")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection closes here
	})
	f := &fake{name: "a", srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	_, url := newTestGateway(t, Options{}, f)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /v2/models/m/infer?cut=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != io.ErrUnexpectedEOF || string(b) != "only ten b" {
		t.Errorf("the cut answer: %q, %v; want its 10 bytes and io.ErrUnexpectedEOF", b, err)
	}
	if r := post(t, url+"/v2/models/m/infer", "", nil, []byte("{}")); r.code != 200 || r.body != "whole" {
		t.Fatalf("the next request: %d %s", r.code, r.body)
	}
}
