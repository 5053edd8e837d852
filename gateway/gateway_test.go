package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fake is a KServe v2 HTTP backend for the gateway's tests: readiness, a
// repository index of its models, and an infer route that answers with its
// name and the hash of the body it got, or misbehaves as mode says.
type fake struct {
	name   string
	srv    *httptest.Server
	models []string
	mode   atomic.Value // "ok", "503", "429", "drop", "hang"
	mu     sync.Mutex
	infers map[string]int // model -> requests
	auth   []string
	last   []byte // the last inference request's body
	lastHL string // and its Inference-Header-Content-Length
}

func newFake(t testing.TB, name string, models ...string) *fake {
	t.Helper()
	f := &fake{name: name, models: models, infers: map[string]int{}}
	f.mode.Store("ok")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, r *http.Request) {
		var idx []map[string]string
		for _, m := range f.models {
			name, version, ok := strings.Cut(m, ":") // "model:version", version 1 by default
			if !ok {
				version = "1"
			}
			idx = append(idx, map[string]string{"name": name, "version": version, "state": "READY"})
		}
		idx = append(idx, map[string]string{"name": "broken", "version": "1", "state": "UNAVAILABLE"})
		json.NewEncoder(w).Encode(idx)
	})
	mux.HandleFunc("GET /v2/models/{model}/stream", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if string(msg) == "bye" {
				c.Close(websocket.StatusNormalClosure, "bye from "+f.name)
				return
			}
			c.Write(r.Context(), typ, append([]byte(f.name+":"), msg...))
		}
	})
	mux.HandleFunc("/v2/models/{model}/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.infers[r.PathValue("model")]++
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.last, f.lastHL = body, r.Header.Get("Inference-Header-Content-Length")
		f.mu.Unlock()
		switch f.mode.Load() {
		case "503":
			http.Error(w, `{"error":"not ready"}`, http.StatusServiceUnavailable)
			return
		case "429":
			http.Error(w, `{"error":"queue full"}`, http.StatusTooManyRequests)
			return
		case "drop":
			panic(http.ErrAbortHandler) // the connection breaks before an reply
		}
		sum := sha256.Sum256(body)
		w.Header().Set("Inference-Header-Content-Length", r.Header.Get("Inference-Header-Content-Length"))
		fmt.Fprintf(w, `{"backend":%q,"path":%q,"sha":%q}`, f.name, r.URL.Path, hex.EncodeToString(sum[:]))
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fake) count(model string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.infers[model]
}

// newTestGateway starts a gateway over fakes and waits until all are ready.
func newTestGateway(t testing.TB, opts Options, fakes ...*fake) (*Gateway, string) {
	t.Helper()
	if opts.PollInterval == 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	if opts.SlowStart == 0 {
		opts.SlowStart = -1
	}
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	var eps []Endpoint
	for _, f := range fakes {
		eps = append(eps, Endpoint{HTTP: f.addr()})
	}
	g.SetEndpoints(eps)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, s := range g.Backends() {
			if s.Ready {
				n++
			}
		}
		if n == len(fakes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends not ready: %+v", g.Backends())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return g, serveTest(t, g)
}

// serveTest serves g's HTTP API on loopback with HTTPServer, as kiln
// gateway does, and returns its URL.
func serveTest(t testing.TB, g *Gateway) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer(g, &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute})
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return "http://" + l.Addr().String()
}

type reply struct {
	code    int
	backend string
	body    string
}

func post(t *testing.T, url, token string, header map[string]string, body []byte) reply {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a struct{ Backend string }
	json.Unmarshal(b, &a)
	return reply{resp.StatusCode, a.Backend, string(b)}
}

const inferBody = `{"inputs":[{"name":"image","shape":[1],"datatype":"FP32","data":[0.5]}]}`

// TestGatewayRouting: a model goes only to the backends where it is READY;
// a model on none is 503; the body reaches the backend unchanged (the binary
// extension's bytes included) and the versioned path is kept.
func TestGatewayRouting(t *testing.T) {
	a, b, c := newFake(t, "a", "m", "pair"), newFake(t, "b", "m", "pair"), newFake(t, "c", "m")
	_, url := newTestGateway(t, Options{}, a, b, c)
	for range 60 {
		if got := post(t, url+"/v2/models/pair/infer", "", nil, []byte(inferBody)); got.code != 200 || got.backend == "c" {
			t.Fatalf("pair: %+v", got)
		}
		if got := post(t, url+"/v2/models/m/infer", "", nil, []byte(inferBody)); got.code != 200 {
			t.Fatalf("m: %+v", got)
		}
	}
	if c.count("pair") != 0 || a.count("pair") == 0 || b.count("pair") == 0 {
		t.Errorf("pair requests: a %d, b %d, c %d; want none on c", a.count("pair"), b.count("pair"), c.count("pair"))
	}
	if a.count("m") == 0 || b.count("m") == 0 || c.count("m") == 0 {
		t.Errorf("m requests: a %d, b %d, c %d; want some on each", a.count("m"), b.count("m"), c.count("m"))
	}
	for _, m := range []string{"nowhere", "broken"} {
		if got := post(t, url+"/v2/models/"+m+"/infer", "", nil, []byte(inferBody)); got.code != 503 || !strings.Contains(got.body, "no backend has the model ready") {
			t.Errorf("%s: %+v, want 503", m, got)
		}
	}
	bin := append([]byte(`{"inputs":[{"name":"image","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}`), 0, 0, 0x80, 0x3f, 0xff, 0xfe, 0, 0)
	got := post(t, url+"/v2/models/m/versions/1/infer", "", map[string]string{"Inference-Header-Content-Length": "93",
		"Content-Type": "application/octet-stream"}, bin)
	sum := sha256.Sum256(bin)
	if got.code != 200 || !strings.Contains(got.body, hex.EncodeToString(sum[:])) || !strings.Contains(got.body, "/v2/models/m/versions/1/infer") {
		t.Errorf("binary request: %+v", got)
	}
	if resp, err := http.Get(url + "/v2/models/stats"); err != nil || resp.StatusCode != 200 {
		t.Errorf("statistics of all models: %v %v", resp, err)
	}
	resp, _ := http.Post(url+"/v2/repository/index", "", nil)
	idx, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(idx), `"name":"pair"`) || strings.Contains(string(idx), "broken") {
		t.Errorf("index: %s", idx)
	}

	// versions: a request for a version goes only where that version is READY
	d, e := newFake(t, "d", "v:1"), newFake(t, "e", "v:2", "v:3")
	_, url = newTestGateway(t, Options{}, d, e)
	versions := []struct {
		path string
		want int
		from string // "" any
	}{
		{"/v2/models/v/versions/1/infer", 200, "d"},
		{"/v2/models/v/versions/2/infer", 200, "e"},
		{"/v2/models/v/versions/3/infer", 200, "e"},
		{"/v2/models/v/versions/4/infer", 503, ""},
		{"/v2/models/v/infer", 200, ""},
	}
	for _, v := range versions {
		for range 10 {
			if got := post(t, url+v.path, "", nil, []byte(inferBody)); got.code != v.want || v.from != "" && got.backend != v.from {
				t.Fatalf("%s: %+v, want %d from %q", v.path, got, v.want, v.from)
			}
		}
	}
}

// TestGatewayRetries: refusals before running (503) and lost connections
// of stateless requests are retried on another backend; a sequence request
// whose connection broke is not (it may have run); when every backend's
// queue is full the client gets 429.
func TestGatewayRetries(t *testing.T) {
	tests := []struct {
		name     string
		modes    [2]string
		body     string
		opts     Options
		wantCode int
		wantFrom string // the backend that answered ("" any)
	}{
		{"503 retried", [2]string{"503", "ok"}, inferBody, Options{Policy: "roundrobin"}, 200, "b"},
		{"lost retried", [2]string{"drop", "ok"}, inferBody, Options{Policy: "roundrobin"}, 200, "b"},
		{"429 tried elsewhere", [2]string{"429", "ok"}, inferBody, Options{Policy: "roundrobin"}, 200, "b"},
		{"all full", [2]string{"429", "429"}, inferBody, Options{}, 429, ""},
		{"all refusing", [2]string{"503", "503"}, inferBody, Options{}, 503, ""},
		{"lost sequence not retried", [2]string{"drop", "ok"}, `{"parameters":{"sequence_id":%d},"inputs":[]}`, Options{Policy: "roundrobin"}, 502, ""},
		{"lost not retried when told", [2]string{"drop", "ok"}, inferBody, Options{Policy: "roundrobin", NoRetryLost: true}, 502, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newFake(t, "a", "m"), newFake(t, "b", "m")
			_, url := newTestGateway(t, tt.opts, a, b)
			a.mode.Store(tt.modes[0])
			b.mode.Store(tt.modes[1])
			// round robin starts on either: send until a was tried first
			for i := 0; i < 8; i++ {
				before := b.count("m")
				body := tt.body
				if strings.Contains(body, "%d") {
					body = fmt.Sprintf(body, i) // a new sequence each time
				}
				got := post(t, url+"/v2/models/m/infer", "", nil, []byte(body))
				if a.count("m") == 0 || b.count("m") > before && a.count("m") == 0 {
					continue
				}
				if got.code != tt.wantCode || tt.wantFrom != "" && got.backend != tt.wantFrom {
					t.Fatalf("got %+v, want %d from %q", got, tt.wantCode, tt.wantFrom)
				}
				if tt.wantCode == 502 && b.count("m") != before {
					t.Errorf("a request that may have run was sent again")
				}
				return
			}
			t.Fatal("backend a never tried")
		})
	}
}

// TestGatewayEjection: a backend whose connections break is ejected after
// the failure threshold and gets no traffic until polls readmit it.
func TestGatewayEjection(t *testing.T) {
	a, b := newFake(t, "a", "m"), newFake(t, "b", "m")
	g, url := newTestGateway(t, Options{FailureThreshold: 2, EjectTime: time.Hour}, a, b)
	a.mode.Store("drop")
	for range 30 {
		if got := post(t, url+"/v2/models/m/infer", "", nil, []byte(inferBody)); got.code != 200 {
			t.Fatalf("%+v", got)
		}
	}
	if n := a.count("m"); n != 2 {
		t.Errorf("a got %d requests, want 2 (the failure threshold), then none", n)
	}
	for _, s := range g.Backends() {
		if s.HTTP == a.addr() && !s.Ejected {
			t.Errorf("a not ejected: %+v", s)
		}
	}
	// A closed port ejects at once.
	c, d := newFake(t, "c", "m"), newFake(t, "d", "m")
	_, url = newTestGateway(t, Options{FailureThreshold: 100, EjectTime: time.Hour}, c, d)
	c.srv.Close()
	for range 20 {
		if got := post(t, url+"/v2/models/m/infer", "", nil, []byte(inferBody)); got.code != 200 || got.backend != "d" {
			t.Fatalf("%+v", got)
		}
	}
}

// TestGatewayAdmission: client tokens, rate limits, load shedding on the
// gateway's own count, the backend token.
func TestGatewayAdmission(t *testing.T) {
	a := newFake(t, "a", "m")
	_, url := newTestGateway(t, Options{Clients: []Client{{Name: "alice", Token: "t1", Rate: 0.001, Burst: 2}, {Name: "bob", Token: "t2"}},
		BackendToken: "inner"}, a)
	steps := []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {"t1", 200}, {"t1", 200}, {"t1", 429}, {"t2", 200}}
	for i, s := range steps {
		if got := post(t, url+"/v2/models/m/infer", s.token, nil, []byte(inferBody)); got.code != s.want {
			t.Errorf("step %d (token %q): %d %s, want %d", i, s.token, got.code, got.body, s.want)
		}
	}
	a.mu.Lock()
	for _, h := range a.auth {
		if h != "Bearer inner" {
			t.Errorf("backend got Authorization %q, want the backend token", h)
		}
	}
	a.mu.Unlock()

	// every eligible backend at its queue capacity: 429 without sending
	b := newFake(t, "b", "m")
	g, url := newTestGateway(t, Options{MaxQueue: 1}, b)
	g.mu.RLock()
	for _, be := range g.backends {
		be.outstanding.Store(1)
	}
	g.mu.RUnlock()
	if got := post(t, url+"/v2/models/m/infer", "", nil, []byte(inferBody)); got.code != 429 || b.count("m") != 0 {
		t.Errorf("full: %+v, backend got %d", got, b.count("m"))
	}

	// priority mapping: a client's level goes into requests that set no
	// parameters of their own, JSON and binary alike
	c := newFake(t, "c", "m")
	_, url = newTestGateway(t, Options{Clients: []Client{{Name: "batch", Token: "low", Priority: 2}, {Name: "online", Token: "hi"}}}, c)
	bin := append([]byte(`{"inputs":[{"name":"image","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}`), 0, 0, 0x80, 0x3f)
	prio := []struct {
		name, token string
		header      map[string]string
		body        []byte
		want        string // the JSON part the backend gets
	}{
		{"json, client with a level", "low", nil, []byte(inferBody), `{"parameters":{"priority":2},"inputs":`},
		{"json, client without", "hi", nil, []byte(inferBody), inferBody},
		{"json, own parameters kept", "low", nil, []byte(`{"parameters":{"priority":1},"inputs":[]}`), `{"parameters":{"priority":1},"inputs":[]}`},
		{"binary, client with a level", "low", map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(bin) - 4)}, bin,
			`{"parameters":{"priority":2},"inputs":[{"name":"image"`},
	}
	for _, p := range prio {
		got := post(t, url+"/v2/models/m/infer", p.token, p.header, p.body)
		c.mu.Lock()
		last, hl := string(c.last), c.lastHL
		c.mu.Unlock()
		if got.code != 200 || !strings.HasPrefix(last, p.want) {
			t.Errorf("%s: %d, the backend got %q, want it to start %q", p.name, got.code, last, p.want)
		}
		if p.header != nil {
			n, err := strconv.Atoi(hl)
			if err != nil || n != len(last)-4 || !json.Valid([]byte(last[:n])) || !strings.HasSuffix(last, "\x00\x00\x80\x3f") {
				t.Errorf("%s: the backend got header length %q for %q", p.name, hl, last)
			}
		}
	}
}

// TestGatewaySequence: the requests of one sequence go to one backend.
func TestGatewaySequence(t *testing.T) {
	a, b, c := newFake(t, "a", "m"), newFake(t, "b", "m"), newFake(t, "c", "m")
	g, url := newTestGateway(t, Options{Policy: "roundrobin"}, a, b, c)
	for seq := range 5 {
		first := ""
		for range 6 {
			got := post(t, url+"/v2/models/m/infer", "", nil, fmt.Appendf(nil, `{"parameters":{"sequence_id":%d},"inputs":[]}`, seq))
			if first == "" {
				first = got.backend
			}
			if got.code != 200 || got.backend != first {
				t.Fatalf("sequence %d: %+v after %q", seq, got, first)
			}
		}
		got := post(t, url+"/v2/models/m/infer", "", nil, fmt.Appendf(nil, `{"parameters":{"sequence_id":%d,"sequence_end":true},"inputs":[]}`, seq))
		if got.backend != first {
			t.Fatalf("sequence %d's end: %+v, want %q", seq, got, first)
		}
		if _, ok := g.seqs.Load(fmt.Sprintf("s%d", seq)); ok {
			t.Errorf("sequence %d still kept after its end", seq)
		}
	}
}

// TestGatewayDrain: once draining, not ready and new requests are 503.
func TestGatewayDrain(t *testing.T) {
	a := newFake(t, "a", "m")
	g, url := newTestGateway(t, Options{}, a)
	if resp, _ := http.Get(url + "/v2/health/ready"); resp.StatusCode != 200 {
		t.Fatalf("ready: %d", resp.StatusCode)
	}
	g.Drain()
	if resp, _ := http.Get(url + "/v2/health/ready"); resp.StatusCode != 503 {
		t.Errorf("ready while draining: %d", resp.StatusCode)
	}
	if got := post(t, url+"/v2/models/m/infer", "", nil, []byte(inferBody)); got.code != 503 {
		t.Errorf("infer while draining: %+v", got)
	}
	if resp, _ := http.Get(url + "/v2/health/live"); resp.StatusCode != 200 {
		t.Errorf("live while draining: %d", resp.StatusCode)
	}
}

// TestGatewayWebSocket: the stream is proxied message by message, text and
// binary, to a backend with the model, and the backend's close goes across.
func TestGatewayWebSocket(t *testing.T) {
	a, b := newFake(t, "a", "m"), newFake(t, "b", "other")
	_, url := newTestGateway(t, Options{}, a, b)
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/v2/models/m/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, m := range []struct {
		typ  websocket.MessageType
		data string
	}{{websocket.MessageText, `{"inputs":[]}`}, {websocket.MessageBinary, "\x00\x01\xff"}} {
		if err := c.Write(ctx, m.typ, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != m.typ || string(got) != "a:"+m.data {
			t.Fatalf("echo: %v %q %v", typ, got, err)
		}
	}
	c.Write(ctx, websocket.MessageText, []byte("bye"))
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("close: %v", err)
	}
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/v2/models/nowhere/stream", nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Errorf("a stream for a model on no backend: %v", err)
	}
}
