package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/examples"
)

// TestServeCacheSize: kiln serve --cache-size bounds the response cache
// of the models that ask for it; a bad size is a usage error.
func TestServeCacheSize(t *testing.T) {
	if c := runServe(context.Background(), []string{"--cache-size", "lots"}, nil); c != exitError {
		t.Fatalf("--cache-size lots: exit %d, want %d", c, exitError)
	}
	repo := t.TempDir()
	os.MkdirAll(filepath.Join(repo, "tiny", "1"), 0o755)
	os.WriteFile(filepath.Join(repo, "tiny", "1", "model.onnx"), examples.TinyCNNModel, 0o644)
	os.WriteFile(filepath.Join(repo, "tiny", "config.pbtxt"), []byte("max_batch_size: 4\nresponse_cache { enable: true }\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan [3]string, 1)
	code := make(chan int, 1)
	go func() {
		code <- runServe(ctx, []string{"--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "-1", "--metrics-port", "-1",
			"--model-repository", repo, "--no-build", "--cache-size", "1M"}, started)
	}()
	var addrs [3]string
	select {
	case addrs = <-started:
	case c := <-code:
		t.Fatalf("serve exited with %d", c)
	}
	base := "http://" + addrs[0]
	waitLoaded(t, base)
	in := examples.TinyCNNInput(1)
	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
	var answers []string
	for range 2 {
		resp, err := http.Post(base+"/v2/models/tiny/infer", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("infer: %d %s", resp.StatusCode, b)
		}
		answers = append(answers, string(b))
	}
	if answers[0] != answers[1] {
		t.Fatalf("the cached answer differs: %s, then %s", answers[0], answers[1])
	}
	resp, err := http.Get(base + "/v2/models/tiny/stats")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"cache_hit":{"count":1,`) || !strings.Contains(string(b), `"cache_miss":{"count":1,`) || !strings.Contains(string(b), `"execution_count":1`) {
		t.Fatalf("stats: %s", b)
	}
	// the log settings of the running server
	resp, err = http.Post(base+"/v2/logging", "application/json", strings.NewReader(`{"log_verbose_level":1,"log_format":"json"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"log_format":"json"`) || !strings.Contains(string(b), `"log_verbose_level":1`) {
		t.Fatalf("log settings: %d %s", resp.StatusCode, b)
	}
	cancel()
	if c := <-code; c != exitOK {
		t.Errorf("exit %d", c)
	}
}
