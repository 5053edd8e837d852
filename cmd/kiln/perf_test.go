package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/perf"
)

// serverSuccess is the server's count of successful tinycnn requests, from
// its statistics endpoint.
func serverSuccess(t *testing.T, httpAddr string) uint64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/v2/models/tinycnn/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		ModelStats []struct {
			InferenceStats struct {
				Success struct {
					Count uint64 `json:"count"`
				} `json:"success"`
			} `json:"inference_stats"`
		} `json:"model_stats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, m := range st.ModelStats {
		n += m.InferenceStats.Success.Count
	}
	return n
}

// TestPerf runs kiln perf against kiln serve on loopback over every
// protocol and both modes: its request count must equal the server's
// success count over the run, its throughput must reproduce the server's
// statistics within 5% at every step, and its reports must be written.
func TestPerf(t *testing.T) {
	srv := startReadmeServe(t, nil, t.TempDir())
	defer srv.stop(t)
	httpAddr, grpcAddr := srv.addrs[0], srv.addrs[2]
	concurrency := []string{"--concurrency-range", "1:2"}
	// perf_analyzer's JSON input layout: two sets, batch 1 and batch 3
	jsonData := filepath.Join(t.TempDir(), "inputs.json")
	{
		one, three := make([]float64, 3*32*32), make([]float64, 3*3*32*32)
		for i := range three {
			three[i] = float64(i%7) / 7
		}
		b, _ := json.Marshal(map[string]any{"data": []any{
			map[string]any{"image": one},
			map[string]any{"image": map[string]any{"content": three, "shape": []int{3, 3, 32, 32}}},
		}})
		if err := os.WriteFile(jsonData, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		args  []string
		mode  string
		batch int64 // inferences per request (0: 1 and 3 in turn)
	}{
		{"http JSON", append([]string{"-u", httpAddr}, concurrency...), "concurrency", 1},
		{"http binary", append([]string{"-u", httpAddr, "--binary"}, concurrency...), "concurrency", 1},
		{"grpc unary", append([]string{"-i", "grpc", "-u", grpcAddr}, concurrency...), "concurrency", 1},
		{"grpc stream", append([]string{"-i", "grpc", "--streaming", "-u", grpcAddr}, concurrency...), "concurrency", 1},
		{"websocket", append([]string{"-i", "ws", "-u", httpAddr}, concurrency...), "concurrency", 1},
		{"http poisson rate", []string{"-u", httpAddr, "--request-rate-range", "200:300:100", "--request-distribution", "poisson"}, "request_rate", 1},
		{"grpc constant rate", []string{"-i", "grpc", "-u", grpcAddr, "--request-rate-range", "250"}, "request_rate", 1},
		{"websocket, data files of batch 2", []string{"-i", "ws", "-u", httpAddr, "--input-data", "../../examples/tinycnn/test_data_set_0"}, "concurrency", 2},
		{"grpc stream, batch 4", []string{"-i", "grpc", "--streaming", "-u", grpcAddr, "-b", "4"}, "concurrency", 4},
		{"http binary, a JSON data file of batches 1 and 3", []string{"-u", httpAddr, "--binary", "--input-data", jsonData}, "concurrency", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			jsonFile, csvFile, plotFile := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.csv"), filepath.Join(dir, "latency.svg")
			args := append([]string{"perf", "-m", "tinycnn", "--measurement-interval", "400ms", "--max-trials", "5",
				"--json", jsonFile, "-f", csvFile, "--plot", plotFile, "--progress"}, tt.args...)
			before := serverSuccess(t, httpAddr)
			var out bytes.Buffer
			old := stdOut
			stdOut = &out
			var code int
			errs := captureErr(t, func() { code = runCommand(args) })
			stdOut = old
			after := serverSuccess(t, httpAddr)
			if code != exitOK {
				t.Fatalf("kiln %q exited %d\nstdout: %s\nstderr: %s", args, code, out.String(), errs)
			}
			var rep perf.Report
			b, err := os.ReadFile(jsonFile)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Mode != tt.mode || len(rep.Steps) == 0 {
				t.Fatalf("mode %q with %d steps, want %q", rep.Mode, len(rep.Steps), tt.mode)
			}
			if rep.Errors != 0 {
				t.Errorf("%d failed requests", rep.Errors)
			}
			if uint64(rep.Requests) != after-before || rep.ServerRequests != after-before {
				t.Errorf("kiln perf sent %d requests (server count in its report %d), the server answered %d", rep.Requests, rep.ServerRequests, after-before)
			}
			for _, s := range rep.Steps {
				if s.Requests == 0 || s.Server.Throughput == 0 {
					t.Fatalf("step %+v measured nothing", s)
				}
				if tt.batch == 0 {
					// one worker alternates the two sets: requests of 1 and 3
					if lo, hi := 2*s.Requests-1, 2*s.Requests+1; s.Concurrency == 1 && (s.Inferences < lo || s.Inferences > hi) {
						t.Errorf("step %d: %d inferences in %d requests of 1 and 3 in turn", s.Concurrency, s.Inferences, s.Requests)
					}
				} else if s.Inferences != tt.batch*s.Requests {
					t.Errorf("step %d/%g: %d inferences in %d requests, want %d each", s.Concurrency, s.RequestRate, s.Inferences, s.Requests, tt.batch)
				}
				d := math.Abs(s.Throughput-s.Server.Throughput) / s.Server.Throughput
				t.Logf("step %d/%g: %.1f inferences/s, the server's statistics %.1f/s (%.2f%% apart)", s.Concurrency, s.RequestRate, s.Throughput, s.Server.Throughput, 100*d)
				if d > 0.05 {
					t.Errorf("step %d/%g: throughput %.1f/s, the server's statistics %.1f/s (%.1f%% apart)", s.Concurrency, s.RequestRate, s.Throughput, s.Server.Throughput, 100*d)
				}
				if s.Server.ComputeInfer <= 0 || s.Latency.P50 <= 0 || s.Latency.P99 < s.Latency.P50 {
					t.Errorf("step %d/%g: server infer %v, p50 %v, p99 %v", s.Concurrency, s.RequestRate, s.Server.ComputeInfer, s.Latency.P50, s.Latency.P99)
				}
			}
			if !strings.Contains(out.String(), "p95 ms") || !strings.Contains(out.String(), "tinycnn over") {
				t.Errorf("no table on stdout:\n%s", out.String())
			}
			if !strings.Contains(errs, "window 1/5") {
				t.Errorf("no progress line with --progress:\n%s", errs)
			}
			c, err := os.ReadFile(csvFile)
			if err != nil {
				t.Fatal(err)
			}
			if lines := strings.Split(strings.TrimSpace(string(c)), "\n"); len(lines) != len(rep.Steps)+1 || !strings.Contains(lines[0], "Inferences/Second") {
				t.Errorf("CSV:\n%s", c)
			}
			if p, err := os.ReadFile(plotFile); err != nil || !bytes.HasPrefix(p, []byte("<?xml")) {
				t.Errorf("plot: %v", err)
			}
		})
	}

	// a front without the statistics endpoint (as a proxy may be): measured
	// from the client's side, with a warning
	t.Run("no statistics endpoint", func(t *testing.T) {
		target, _ := neturl.Parse("http://" + httpAddr)
		proxy := httputil.NewSingleHostReverseProxy(target)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/stats") {
				http.NotFound(w, r)
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		defer front.Close()
		jsonFile := filepath.Join(t.TempDir(), "r.json")
		args := []string{"perf", "-m", "tinycnn", "-u", strings.TrimPrefix(front.URL, "http://"), "--measurement-interval", "200ms",
			"--max-trials", "3", "--json", jsonFile}
		before := serverSuccess(t, httpAddr)
		var code int
		old := stdOut
		stdOut = io.Discard
		errs := captureErr(t, func() { code = runCommand(args) })
		stdOut = old
		if code != exitOK {
			t.Fatalf("kiln %q exited %d: %s", args, code, errs)
		}
		if !strings.Contains(errs, "no server-side figures") || !strings.Contains(errs, "HTTP 404") {
			t.Errorf("no warning about the statistics:\n%s", errs)
		}
		var rep perf.Report
		b, _ := os.ReadFile(jsonFile)
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.ServerStatsError == "" || rep.Errors != 0 || uint64(rep.Requests) != serverSuccess(t, httpAddr)-before {
			t.Errorf("report: stats error %q, %d errors, %d requests (server: %d)", rep.ServerStatsError, rep.Errors, rep.Requests, serverSuccess(t, httpAddr)-before)
		}
	})

	// --stability-percentage 0: every step runs --max-trials windows; the
	// first signal (the stop channel) ends the run with a report of the
	// windows measured, the requests in flight finished, none lost
	t.Run("fixed length and stopped early", func(t *testing.T) {
		for _, c := range []struct {
			name    string
			args    []string
			stopAt  time.Duration // 0: not stopped
			steps   int
			windows int // windows of the last step, at least
		}{
			{"fixed length", []string{"-u", httpAddr, "--concurrency-range", "1:2", "--max-trials", "4"}, 0, 2, 4},
			{"stopped, concurrency", []string{"-u", httpAddr, "--concurrency-range", "4", "--max-trials", "1000"}, 1500 * time.Millisecond, 1, 2},
			{"stopped, poisson rate", []string{"-i", "grpc", "-u", grpcAddr, "--request-rate-range", "200", "--request-distribution", "poisson",
				"--max-trials", "1000"}, 1500 * time.Millisecond, 1, 2},
		} {
			t.Run(c.name, func(t *testing.T) {
				jsonFile := filepath.Join(t.TempDir(), "r.json")
				args := append([]string{"-m", "tinycnn", "--measurement-interval", "250ms", "--stability-percentage", "0", "--json", jsonFile}, c.args...)
				stop := make(chan struct{})
				if c.stopAt > 0 {
					tm := time.AfterFunc(c.stopAt, func() { close(stop) })
					defer tm.Stop()
				}
				before := serverSuccess(t, httpAddr)
				var code int
				old := stdOut
				stdOut = io.Discard
				errs := captureErr(t, func() { code = runPerf(context.Background(), args, stop) })
				stdOut = old
				after := serverSuccess(t, httpAddr)
				if code != exitOK {
					t.Fatalf("kiln perf %q exited %d: %s", args, code, errs)
				}
				var rep perf.Report
				b, _ := os.ReadFile(jsonFile)
				if err := json.Unmarshal(b, &rep); err != nil {
					t.Fatal(err)
				}
				if rep.Interrupted != (c.stopAt > 0) || len(rep.Steps) != c.steps {
					t.Fatalf("interrupted %v with %d steps, want %v and %d", rep.Interrupted, len(rep.Steps), c.stopAt > 0, c.steps)
				}
				for i, s := range rep.Steps {
					if s.Stable {
						t.Errorf("step %d stable without a stability percentage", i)
					}
					if i < len(rep.Steps)-1 && len(s.Windows) != 4 || len(s.Windows) < c.windows {
						t.Errorf("step %d: %d windows", i, len(s.Windows))
					}
				}
				if c.stopAt == 0 && len(rep.Steps[len(rep.Steps)-1].Windows) != 4 {
					t.Errorf("the last step ran %d windows, want --max-trials 4", len(rep.Steps[len(rep.Steps)-1].Windows))
				}
				// every request sent was answered and counted: none cut by the stop
				if rep.Errors != 0 || rep.ErrorKinds != nil || uint64(rep.Requests) != after-before || rep.ServerRequests != after-before {
					t.Errorf("%d requests (%d failed: %v), the server answered %d (%d in the report)", rep.Requests, rep.Errors, rep.ErrorKinds, after-before, rep.ServerRequests)
				}
				if c.stopAt > 0 && !strings.Contains(errs, "interrupted:") {
					t.Errorf("no word of the interruption: %s", errs)
				}
				if strings.Contains(errs, "not stable") {
					t.Errorf("a warning about stability when none was asked: %s", errs)
				}
			})
		}
	})

	// errors by kind: a batch over the model's max_batch_size (8) fails
	// every request
	t.Run("errors by kind", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			kind string
		}{
			{[]string{"-u", httpAddr}, "HTTP 400"},
			{[]string{"-i", "grpc", "-u", grpcAddr}, "gRPC INVALID_ARGUMENT"},
			{[]string{"-i", "ws", "-u", httpAddr}, "stream"},
		} {
			jsonFile := filepath.Join(t.TempDir(), "r.json")
			args := append([]string{"perf", "-m", "tinycnn", "-b", "9", "--measurement-interval", "200ms",
				"--max-trials", "3", "--json", jsonFile}, c.args...)
			var code int
			old := stdOut
			stdOut = io.Discard
			errs := captureErr(t, func() { code = runCommand(args) })
			stdOut = old
			if code != exitOK {
				t.Fatalf("kiln %q exited %d: %s", args, code, errs)
			}
			var rep perf.Report
			b, _ := os.ReadFile(jsonFile)
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if n := rep.Steps[0].Errors[c.kind]; n == 0 || rep.Steps[0].Requests != 0 {
				t.Errorf("%q: errors %v, %d successes; want only %q", args, rep.Steps[0].Errors, rep.Steps[0].Requests, c.kind)
			}
			if rep.ErrorKinds[c.kind] != rep.Errors || rep.Errors < rep.Steps[0].Errors[c.kind] {
				t.Errorf("%q: the run's errors %d by kind %v, the step's %v", args, rep.Errors, rep.ErrorKinds, rep.Steps[0].Errors)
			}
		}
	})
}

// TestPerfBadArguments checks kiln perf's errors: one line naming the
// problem, exit status 2.
func TestPerfBadArguments(t *testing.T) {
	closed := "127.0.0.1:1" // nothing listens there
	srv := startReadmeServe(t, nil, t.TempDir())
	defer srv.stop(t)
	tests := []struct {
		name     string
		args     []string
		contains string
	}{
		{"no model", []string{}, "want a model: -m MODEL"},
		{"bad range", []string{"-m", "m", "--concurrency-range", "4:1"}, "END 1 is below START 4"},
		{"fractional concurrency", []string{"-m", "m", "--concurrency-range", "1.5"}, "want whole numbers"},
		{"both modes", []string{"-m", "m", "--concurrency-range", "1", "--request-rate-range", "10"}, "cannot be combined"},
		{"bad distribution", []string{"-m", "m", "--request-rate-range", "10", "--request-distribution", "uniform"}, "want constant or poisson"},
		{"bad protocol", []string{"-m", "m", "-i", "udp"}, `-i "udp": want http, grpc or ws`},
		{"binary over grpc", []string{"-m", "m", "-i", "grpc", "--binary"}, "--binary is for -i http"},
		{"streaming over http", []string{"-m", "m", "--streaming"}, "--streaming is for -i grpc"},
		{"bad plot file", []string{"-m", "m", "--plot", "x.jpg"}, "want a .svg or .png file"},
		{"too few trials", []string{"-m", "m", "-u", closed, "--max-trials", "2"}, "want at least 3"},
		{"negative stability", []string{"-m", "m", "-u", closed, "--stability-percentage", "-1"}, "want a positive number, or 0 for none"},
		{"a shape the model cannot take", []string{"-m", "tinycnn", "-u", "%HTTP%", "--shape", "image:1x3x16x16"}, "dimension 2 is 16, the model's is 32"},
		{"unknown model", []string{"-m", "nope", "-u", "%HTTP%"}, "kiln: perf: server: GET /v2/models/nope: HTTP 404"},
		{"stray argument", []string{"-m", "m", "extra"}, "unexpected arguments"},
		{"no http server", []string{"-m", "m", "-u", closed}, "connection refused"},
		{"no grpc server", []string{"-m", "m", "-i", "grpc", "-u", closed}, "kiln: perf:"},
		{"no ws server", []string{"-m", "m", "-i", "ws", "-u", closed}, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			args := []string{"perf"}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "%HTTP%", srv.addrs[0]))
			}
			out := captureErr(t, func() { code = runCommand(args) })
			if code != exitError {
				t.Errorf("kiln %q exited %d, want %d", args, code, exitError)
			}
			if !strings.Contains(out, tt.contains) {
				t.Errorf("kiln %q: output lacks %q:\n%s", args, tt.contains, out)
			}
			if n := strings.Count(strings.TrimSuffix(out, "\n"), "\n"); n != 0 {
				t.Errorf("kiln %q: want one line, got %d:\n%s", args, n+1, out)
			}
		})
	}
}

// readmePerfArgs points a README "kiln perf" command at the test's server:
// -u localhost:8000 (HTTP) or localhost:8001 (gRPC) become its addresses,
// and a command without -u gets the one of its protocol.
func readmePerfArgs(args []string, srv *readmeServer) []string {
	out := append([]string{}, args...)
	grpc := false
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "-i" || out[i] == "--i" {
			grpc = out[i+1] == "grpc"
		}
	}
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "-u" || out[i] == "--u" {
			switch out[i+1] {
			case "localhost:8001":
				out[i+1] = srv.addrs[2]
			default:
				out[i+1] = srv.addrs[0]
			}
			return out
		}
	}
	if grpc {
		return append(out, "-u", srv.addrs[2])
	}
	return append(out, "-u", srv.addrs[0])
}

// TestPerfTLSAndToken runs kiln perf against a kiln serve that wants TLS
// and a bearer token: with --tls-ca and --token over HTTP and gRPC; without
// the token every call is refused.
func TestPerfTLSAndToken(t *testing.T) {
	certFile, keyFile, pool := writeCert(t, t.TempDir())
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if b, err := os.ReadFile(certFile); err != nil || os.WriteFile(caFile, b, 0o600) != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [3]string, 1)
	code := make(chan int, 1)
	go func() {
		code <- runServe(ctx, []string{"--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "-1",
			"--plan-cache", t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile, "--infer-token", "s3cret"}, started)
	}()
	defer func() {
		cancel()
		if c := <-code; c != exitOK {
			t.Errorf("serve exit %d", c)
		}
	}()
	var addrs [3]string
	select {
	case addrs = <-started:
	case c := <-code:
		t.Fatalf("serve exited with %d", c)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get("https://" + addrs[0] + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
	}
	tests := []struct {
		name     string
		args     []string
		want     int
		contains string
	}{
		{"http", []string{"-u", addrs[0], "--tls-ca", caFile, "--token", "s3cret"}, exitOK, ""},
		{"https URL", []string{"-u", "https://" + addrs[0], "--tls-ca", caFile, "--token", "s3cret", "--binary"}, exitOK, ""},
		{"grpc", []string{"-i", "grpc", "-u", addrs[2], "--tls-ca", caFile, "--token", "s3cret"}, exitOK, ""},
		{"http without the token", []string{"-u", addrs[0], "--tls-ca", caFile}, exitError, "HTTP 401"},
		{"grpc without the token", []string{"-i", "grpc", "-u", addrs[2], "--tls-ca", caFile}, exitError, "Unauthenticated"},
		{"http without the CA", []string{"-u", addrs[0], "--tls", "--token", "s3cret"}, exitError, "certificate"},
		{"ws with a private CA", []string{"-i", "ws", "-u", addrs[0], "--tls-ca", caFile}, exitError, "system's certificates only"},
		{"a CA file that is not PEM", []string{"-u", addrs[0], "--tls-ca", keyFile + ".none"}, exitError, "--tls-ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"perf", "-m", "tinycnn", "--measurement-interval", "200ms", "--max-trials", "3"}, tt.args...)
			var code int
			old := stdOut
			stdOut = io.Discard
			errs := captureErr(t, func() { code = runCommand(args) })
			stdOut = old
			if code != tt.want || !strings.Contains(errs, tt.contains) {
				t.Errorf("kiln %q exited %d, want %d with %q:\n%s", args, code, tt.want, tt.contains, errs)
			}
		})
	}
}
