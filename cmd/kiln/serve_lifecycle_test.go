package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
)

// served is a runServe running in the test, on loopback.
type served struct {
	http, metrics, grpc string // addresses ("" when off)
	code                chan int
	cancel              context.CancelFunc // as SIGTERM
}

// startServed runs kiln serve with args on 127.0.0.1 with any free ports
// (the args may override them), and stops it when the test ends.
func startServed(t *testing.T, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [3]string, 1)
	s := &served{code: make(chan int, 1), cancel: cancel}
	all := append([]string{"--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
		"--allow-gpu-metrics=false", "--plan-cache", t.TempDir()}, args...)
	go func() { s.code <- runServe(ctx, all, started) }()
	select {
	case a := <-started:
		s.http, s.metrics, s.grpc = a[0], a[1], a[2]
	case c := <-s.code:
		cancel()
		t.Fatalf("serve %q exited with %d", args, c)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.code:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	return s
}

// stop ends the server as SIGTERM does and returns its exit status.
func (s *served) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case c := <-s.code:
		s.code <- c // for the cleanup
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
		return -1
	}
}

// grpcConn dials the server's gRPC port in plaintext.
func (s *served) grpcConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// call does one HTTP request and returns its status and body.
func call(t *testing.T, c *http.Client, method, url, token string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds, failing the test after 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// indexStates returns the repository index as model -> state.
func indexStates(t *testing.T, base, token string) map[string]string {
	t.Helper()
	code, body := call(t, nil, "POST", base+"/v2/repository/index", token, nil)
	if code != 200 {
		t.Fatalf("index: %d %s", code, body)
	}
	var idx []struct{ Name, State string }
	if err := json.Unmarshal([]byte(body), &idx); err != nil {
		t.Fatalf("index %s: %v", body, err)
	}
	out := map[string]string{}
	for _, e := range idx {
		out[e.Name] = e.State
	}
	return out
}

// waitLoaded waits until no model of the index is LOADING.
func waitLoaded(t *testing.T, base string) map[string]string {
	t.Helper()
	var st map[string]string
	eventually(t, "the models to load", func() bool {
		st = indexStates(t, base, "")
		for _, s := range st {
			if s == "LOADING" {
				return false
			}
		}
		return true
	})
	return st
}

// writeRepo writes a model repository of tinycnn models: name -> config.pbtxt.
func writeRepo(t *testing.T, models map[string]string) string {
	t.Helper()
	repo := t.TempDir()
	for name, cfg := range models {
		if err := os.MkdirAll(filepath.Join(repo, name, "1"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(repo, name, "1", "model.onnx"), examples.TinyCNNModel, 0o644)
		if cfg != "" {
			os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(cfg), 0o644)
		}
	}
	return repo
}

// tinyRequest is a KServe v2 JSON inference request for tinycnn.
func tinyRequest(n int) []byte {
	in := examples.TinyCNNInput(n)
	b, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
	return b
}

// slowWarmup is a config whose warmup runs tinycnn a million times: the
// model stays LOADING for as long as a test needs.
const slowWarmup = `max_batch_size: 1
model_warmup { name: "long" batch_size: 1 count: 1000000 inputs { key: "image" value { data_type: TYPE_FP32 dims: [3, 32, 32] zero_data: true } } }
`

// TestServeListensWhileLoading (issue 9, item 8): the ports listen before
// the models have loaded; while they load the server is live (HTTP 200,
// gRPC ServerLive) and not ready (HTTP 503, gRPC ServerReady false and
// health NOT_SERVING), inference is refused with 503 and the index shows
// LOADING; cancelling (SIGTERM) ends the loading and serve exits 0.
func TestServeListensWhileLoading(t *testing.T) {
	repo := writeRepo(t, map[string]string{"slow": slowWarmup})
	s := startServed(t, "--model-repository", repo, "--no-build")
	base := "http://" + s.http
	if c, _ := call(t, nil, "GET", base+"/v2/health/live", "", nil); c != 200 {
		t.Errorf("live while loading: %d", c)
	}
	if c, _ := call(t, nil, "GET", base+"/v2/health/ready", "", nil); c != 503 {
		t.Errorf("ready while loading: %d, want 503", c)
	}
	eventually(t, "the model to show as LOADING", func() bool { return indexStates(t, base, "")["slow"] == "LOADING" })
	if c, b := call(t, nil, "POST", base+"/v2/models/slow/infer", "", tinyRequest(1)); c != 503 {
		t.Errorf("inference while loading: %d %s, want 503", c, b)
	}
	if c, _ := call(t, nil, "GET", "http://"+s.metrics+"/metrics", "", nil); c != 200 {
		t.Errorf("metrics while loading: %d", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc := s.grpcConn(t)
	g := inference.NewGRPCInferenceServiceClient(cc)
	if r, err := g.ServerLive(ctx, &inference.ServerLiveRequest{}); err != nil || !r.GetLive() {
		t.Errorf("gRPC ServerLive while loading: %v %v", r, err)
	}
	if r, err := g.ServerReady(ctx, &inference.ServerReadyRequest{}); err != nil || r.GetReady() {
		t.Errorf("gRPC ServerReady while loading: %v %v, want false", r, err)
	}
	if r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health while loading: %v %v, want NOT_SERVING", r, err)
	}
	if c := s.stop(t); c != exitOK {
		t.Errorf("exit %d after a SIGTERM while loading, want 0", c)
	}
}

// TestServeSIGTERMWhileLoading sends a real SIGTERM to kiln serve while a
// model's warmup runs: serve stops loading and exits 0 (before, SIGTERM
// was ignored until every model had loaded and warmed up).
func TestServeSIGTERMWhileLoading(t *testing.T) {
	repo := writeRepo(t, map[string]string{"slow": slowWarmup})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port := splitPort(t, addr)
	code := make(chan int, 1)
	go func() {
		code <- serveCmd([]string{"--host", "127.0.0.1", "--http-port", port, "--grpc-port", "-1", "--metrics-port", "-1",
			"--model-repository", repo, "--no-build"})
	}()
	base := "http://" + addr
	eventually(t, "the model to show as LOADING", func() bool {
		select {
		case c := <-code:
			t.Fatalf("serve exited with %d", c)
		default:
		}
		resp, err := http.Post(base+"/v2/repository/index", "", nil)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(b), `"LOADING"`)
	})
	if c, _ := call(t, nil, "GET", base+"/v2/health/ready", "", nil); c != 503 {
		t.Errorf("ready while loading: %d", c)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("exit %d, want 0", c)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after SIGTERM while loading")
	}
}

func splitPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// TestServeRepositoryMissing (issue 9, item 14): a --model-repository that
// does not exist or is a file stops kiln serve at once, exit 2, with a
// message that names it; so does a --load-model the repository lacks, or
// one without explicit model control, and a certificate that cannot be
// read (before any port listens).
func TestServeRepositoryMissing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	repo := writeRepo(t, map[string]string{"a": ""})
	for _, tt := range []struct {
		name string
		args []string
		msg  string
	}{
		{"missing folder", []string{"--model-repository", filepath.Join(dir, "nope")}, "no such file or directory"},
		{"a file", []string{"--model-repository", file}, "is not a folder"},
		{"missing, explicit", []string{"--model-repository", filepath.Join(dir, "nope"), "--model-control-mode", "explicit"}, "nope"},
		{"missing, poll", []string{"--model-repository", filepath.Join(dir, "nope"), "--model-control-mode", "poll"}, "nope"},
		{"unknown --load-model", []string{"--model-repository", repo, "--model-control-mode", "explicit", "--load-model", "b"}, `--load-model "b"`},
		{"--load-model without explicit", []string{"--model-repository", repo, "--load-model", "a"}, "--load-model needs --model-control-mode explicit"},
		{"--load-model without repository", []string{"--model-control-mode", "explicit", "--load-model", "a"}, "--load-model needs"},
		{"--pprof without metrics", []string{"--pprof", "--metrics-port", "-1"}, "--pprof"},
		{"negative timeout", []string{"--http-read-timeout", "-1s"}, "negative HTTP timeout"},
		{"negative heap floor", []string{"--gc-heap-floor", "-1"}, "--gc-heap-floor -1"},
		{"unreadable certificate", []string{"--tls-cert", filepath.Join(dir, "nope.pem"), "--tls-key", filepath.Join(dir, "nope.key")}, "--tls-cert"},
		{"certificate not PEM", []string{"--tls-cert", file, "--tls-key", file}, "--tls-cert"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			out := captureErr(t, func() {
				code = runServe(context.Background(), append([]string{"--http-port", "0", "--grpc-port", "-1", "--metrics-port", "-1"}, tt.args...), nil)
			})
			if code != exitError || !strings.Contains(out, tt.msg) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, exitError, tt.msg)
			}
			if strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Errorf("want one line, got %q", out)
			}
		})
	}
}

// TestServeExplicitLoad (issue 9, item 15): --model-control-mode explicit
// loads no model at start (the server is ready, every model unloaded), or
// only those of --load-model ('*': all), as Triton does; the repository
// API then loads the others.
func TestServeExplicitLoad(t *testing.T) {
	repo := writeRepo(t, map[string]string{"a": "max_batch_size: 4\n", "b": "max_batch_size: 4\n", "c": ""})
	for _, tt := range []struct {
		name   string
		loads  []string
		loaded string // the models READY after start, in order
	}{
		{"none", nil, ""},
		{"one", []string{"b"}, "b"},
		{"two", []string{"a", "c"}, "ac"},
		{"all", []string{"*"}, "abc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--model-repository", repo, "--model-control-mode", "explicit", "--no-build", "--grpc-port", "-1", "--metrics-port", "-1"}
			for _, l := range tt.loads {
				args = append(args, "--load-model", l)
			}
			s := startServed(t, args...)
			base := "http://" + s.http
			eventually(t, "ready", func() bool { c, _ := call(t, nil, "GET", base+"/v2/health/ready", "", nil); return c == 200 })
			st := indexStates(t, base, "")
			got := ""
			for _, n := range []string{"a", "b", "c"} {
				switch st[n] {
				case "READY":
					got += n
				case "UNAVAILABLE":
				default:
					t.Errorf("model %s: state %q", n, st[n])
				}
			}
			if got != tt.loaded {
				t.Errorf("loaded %q, want %q (index %v)", got, tt.loaded, st)
			}
			wantInfer := 200
			if !strings.Contains(tt.loaded, "a") {
				wantInfer = 404
			}
			if c, b := call(t, nil, "POST", base+"/v2/models/a/infer", "", tinyRequest(1)); c != wantInfer {
				t.Errorf("infer a: %d %s, want %d", c, b, wantInfer)
			}
			// the repository API loads what was not loaded at start
			if c, b := call(t, nil, "POST", base+"/v2/repository/models/a/load", "", nil); c != 200 {
				t.Fatalf("load a: %d %s", c, b)
			}
			if c, b := call(t, nil, "POST", base+"/v2/models/a/infer", "", tinyRequest(1)); c != 200 {
				t.Errorf("infer a after loading it: %d %s", c, b)
			}
			if c := s.stop(t); c != exitOK {
				t.Errorf("exit %d", c)
			}
		})
	}
}
