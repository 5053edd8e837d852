package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/perf"
	"github.com/kilnai/kiln/tensor"
)

// TestGatewayFlags: kiln gateway's bad flags and flag combinations are one
// line naming the problem, exit status 2.
func TestGatewayFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no backends", nil, "want one source of backends"},
		{"two sources", []string{"--backend", "127.0.0.1:1", "--dns", "kiln"}, "want one source of backends"},
		{"bad backend", []string{"--backend", "http=nohost"}, "has no port"},
		{"unknown backend key", []string{"--backend", "http=a:1,admin=a:2"}, `unknown key "admin"`},
		{"unknown policy", []string{"--backend", "127.0.0.1:1", "--policy", "fastest"}, `unknown policy "fastest" (have least, p2c, roundrobin)`},
		{"bad client", []string{"--backend", "127.0.0.1:1", "--client", "alice"}, "want NAME:TOKEN[:RATE[:BURST[:PRIORITY]]]"},
		{"bad ports", []string{"--dns", "kiln", "--backend-ports", "http=x"}, `http port "x"`},
		{"bad k8s service", []string{"--k8s-service", "kiln"}, "want NAMESPACE/NAME"},
		{"arguments", []string{"--backend", "127.0.0.1:1", "extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			out := captureErr(t, func() { code = runCommand(append([]string{"gateway"}, tt.args...)) })
			if code != exitError || !strings.Contains(out, tt.want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Errorf("kiln gateway %q: exit %d, output %q; want 2 and one line with %q", tt.args, code, out, tt.want)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "missing")
	out := captureErr(t, func() {
		if c := runCommand([]string{"gateway", "--backends-file", path, "--http-port", "0", "--grpc-port", "-1", "--metrics-port", "-1"}); c != exitError {
			t.Errorf("a missing backends file: exit %d", c)
		}
	})
	if !strings.Contains(out, "no such file") {
		t.Errorf("a missing backends file: %q", out)
	}
}

// TestGatewayCommand: kiln gateway in front of a kiln serve, as a user runs
// them: inference over HTTP and gRPC (kiln client) through the gateway, its
// metrics, and SIGTERM: exit 0.
func TestGatewayCommand(t *testing.T) {
	s := startServed(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan [3]string, 1)
	code := make(chan int, 1)
	file := filepath.Join(t.TempDir(), "backends")
	os.WriteFile(file, []byte(fmt.Sprintf("# one kiln serve\nhttp=%s,grpc=%s,metrics=%s\n", s.http, s.grpc, s.metrics)), 0o644)
	go func() {
		code <- runGateway(ctx, []string{"--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
			"--backends-file", file, "--poll-interval", "50ms"}, started)
	}()
	var addrs [3]string
	select {
	case addrs = <-started:
	case c := <-code:
		t.Fatalf("gateway exited %d", c)
	case <-time.After(20 * time.Second):
		t.Fatal("gateway did not start")
	}
	base := "http://" + addrs[0]
	eventually(t, "gateway ready", func() bool { c, _ := call(t, nil, "GET", base+"/v2/health/ready", "", nil); return c == 200 })
	if c, body := call(t, nil, "POST", base+"/v2/models/tinycnn/infer", "", tinyRequest(1)); c != 200 || !strings.Contains(body, `"probabilities"`) {
		t.Errorf("HTTP inference through the gateway: %d %s", c, body)
	}
	if c, body := call(t, nil, "GET", base+"/v2/models/tinycnn", "", nil); c != 200 || !strings.Contains(body, `"image"`) {
		t.Errorf("metadata through the gateway: %d %s", c, body)
	}
	if c, body := call(t, nil, "POST", base+"/v2/models/nothere/infer", "", tinyRequest(1)); c != 503 || !strings.Contains(body, "no backend has the model ready") {
		t.Errorf("a model no backend has: %d %s", c, body)
	}
	var stdout strings.Builder
	old := stdOut
	stdOut = &stdout
	errs := captureErr(t, func() {
		if c := runCommand([]string{"client", "--url", addrs[2], "infer", "tinycnn"}); c != exitOK {
			t.Errorf("kiln client infer through the gateway: exit %d", c)
		}
	})
	stdOut = old
	if !strings.Contains(stdout.String(), "output probabilities: FP32 1x10") {
		t.Errorf("kiln client infer through the gateway: %s %s", stdout.String(), errs)
	}
	// the WebSocket stream of kiln serve, through the gateway
	ws, err := api.DialWebSocket(ctx, base, "tinycnn", nil, 0)
	if err != nil {
		t.Fatalf("WebSocket stream through the gateway: %v", err)
	}
	for i := range 3 {
		if err := ws.Send(ctx, fmt.Sprint("r", i), map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		id, out, err := ws.Recv(ctx)
		if err != nil || id != fmt.Sprint("r", i) || out["probabilities"] == nil {
			t.Fatalf("stream answer %d: %q %v %v", i, id, out, err)
		}
	}
	ws.Close()
	resp, err := http.Get("http://" + addrs[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`kiln_gateway_requests_total{backend="` + s.http + `",code="200",model="tinycnn"} 2`,
		`kiln_gateway_requests_total{backend="` + s.http + `",code="OK",model="tinycnn"}`, "kiln_gateway_request_duration_seconds_bucket",
		`kiln_gateway_backend_ready{backend="` + s.http + `"} 1`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// kiln perf through the gateway: the statistics the gateway passes on
	// are one backend's, marked so; kiln perf measures from its side and
	// says why
	for _, args := range [][]string{{"-u", addrs[0]}, {"-i", "grpc", "-u", addrs[2]}} {
		jsonFile := filepath.Join(t.TempDir(), "r.json")
		args = append([]string{"perf", "-m", "tinycnn", "--measurement-interval", "200ms", "--max-trials", "3", "--json", jsonFile}, args...)
		var c int
		stdOut = io.Discard
		errs := captureErr(t, func() { c = runCommand(args) })
		stdOut = old
		var rep perf.Report
		b, _ := os.ReadFile(jsonFile)
		if err := json.Unmarshal(b, &rep); c != exitOK || err != nil {
			t.Fatalf("kiln %q: exit %d, %v: %s", args, c, err, errs)
		}
		if !strings.Contains(rep.ServerStatsError, "kiln gateway") || !strings.Contains(errs, "no server-side figures") || rep.Errors != 0 || rep.Requests == 0 {
			t.Errorf("kiln %q: statistics error %q, %d requests, %d errors:\n%s", args, rep.ServerStatsError, rep.Requests, rep.Errors, errs)
		}
		for _, st := range rep.Steps {
			if st.Server.Throughput != 0 || st.Throughput == 0 {
				t.Errorf("kiln %q: throughput %v, server's %v: want the client's only", args, st.Throughput, st.Server.Throughput)
			}
		}
	}
	cancel()
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("exit %d after SIGTERM", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not stop")
	}
}
