package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/onnx"
)

// TestFlags checks the generator's flags: a model is written where -o
// says, bad flags are refused with a message and exit status 2.
func TestFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"small model", []string{"-o", filepath.Join(dir, "a"), "-width", "32", "-layers", "2"}, 0, ""},
		{"no folder", []string{"-width", "32"}, 2, "-o DIR is required"},
		{"width too small", []string{"-o", dir, "-width", "8"}, 2, "-width 8: want 16..8192"},
		{"no layers", []string{"-o", dir, "-layers", "0"}, 2, "-layers 0: want 1..64"},
		{"unknown flag", []string{"-depth", "3"}, 2, "flag provided but not defined: -depth"},
		{"not a number", []string{"-o", dir, "-width", "wide"}, 2, "invalid value \"wide\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
				t.Fatalf("run %q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.msg)
			}
		})
	}
	b, err := os.ReadFile(filepath.Join(dir, "a", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.DecodeModel(b)
	if err != nil {
		t.Fatalf("the written model does not decode: %v", err)
	}
	if got := len(m.Graph.Node); got != 4 {
		t.Fatalf("%d nodes, want 4 (2 Gemm + 2 Relu)", got)
	}
}

// TestServesAndBatches writes the benchmark's MLP (4 layers of 1024x1024,
// as bench/slo-batching.sh MODEL=mlp does) into a model repository with the
// SLO batcher on, serves it with kiln serve built from this repository, and
// loads it with kiln perf at 16 concurrent gRPC clients: every request
// answers, and the server ran them in batches of more than one on average
// (its statistics), the requests that queued while the engine ran.
func TestServesAndBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kiln and serves a 16 MiB model")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to build kiln")
	}
	dir := t.TempDir()
	kiln := filepath.Join(dir, "kiln")
	if out, err := exec.Command("go", "build", "-o", kiln, "../../cmd/kiln").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kiln: %v\n%s", err, out)
	}
	repo := filepath.Join(dir, "repo")
	if err := write(filepath.Join(repo, "mlp", "1"), 1024, 4); err != nil {
		t.Fatal(err)
	}
	cfg := "max_batch_size: 32\nparameters { key: \"slo_p99_ms\" value: { string_value: \"20\" } }\n"
	if err := os.WriteFile(filepath.Join(repo, "mlp", "config.pbtxt"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// three free ports, held together so that they differ, then freed
	ports := make([]string, 3)
	var held []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		ports[i] = fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range held {
		l.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	serve := exec.CommandContext(ctx, kiln, "serve", "--host", "127.0.0.1", "--http-port", ports[0], "--grpc-port", ports[1],
		"--metrics-port", ports[2], "--model-repository", repo, "--plan-cache", filepath.Join(dir, "plans"))
	serve.Stdout, serve.Stderr = &log, &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = serve.Process.Kill()
		_ = serve.Wait()
	}()
	base := "http://127.0.0.1:" + ports[0]
	for {
		resp, err := http.Get(base + "/v2/models/mlp/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kiln serve did not get ready:\n%s", log.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	perf := exec.CommandContext(ctx, kiln, "perf", "-m", "mlp", "-u", "127.0.0.1:"+ports[1], "-i", "grpc",
		"--concurrency-range", "16:16:1", "--measurement-interval", "500ms", "--max-trials", "3")
	out, err := perf.CombinedOutput()
	if err != nil {
		t.Fatalf("kiln perf: %v\n%s", err, out)
	}
	// the table's row of concurrency 16: its last column is the errors
	row := false
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "16" {
			row = true
			if f[len(f)-1] != "0" {
				t.Fatalf("kiln perf reported errors:\n%s", out)
			}
		}
	}
	if !row {
		t.Fatalf("kiln perf printed no row for concurrency 16:\n%s", out)
	}
	resp, err := http.Get(base + "/v2/models/mlp/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		ModelStats []struct {
			InferenceCount uint64 `json:"inference_count"`
			ExecutionCount uint64 `json:"execution_count"`
		} `json:"model_stats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || len(st.ModelStats) != 1 {
		t.Fatalf("stats: %v %+v", err, st)
	}
	s := st.ModelStats[0]
	if s.ExecutionCount == 0 || s.InferenceCount < 100 {
		t.Fatalf("%d inferences in %d executions: want at least 100\n%s", s.InferenceCount, s.ExecutionCount, out)
	}
	mean := float64(s.InferenceCount) / float64(s.ExecutionCount)
	t.Logf("%d inferences in %d executions: %.2f a batch\n%s", s.InferenceCount, s.ExecutionCount, mean, out)
	if mean <= 1.2 {
		t.Errorf("mean batch %.2f under 16 concurrent clients: want above 1.2", mean)
	}
}
