package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kilnai/kiln/examples"
)

func TestServeExampleAndDrain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [2]string, 1)
	code := make(chan int, 1)
	go func() {
		code <- runServe(ctx, []string{"--http-port", "0", "--metrics-port", "0", "--exit-timeout", "10s"}, started)
	}()
	var addrs [2]string
	select {
	case addrs = <-started:
	case c := <-code:
		t.Fatalf("serve exited with %d", c)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	base := "http://" + addrs[0]
	in := examples.TinyCNNInput(1)
	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, _ := get(base + "/v2/health/ready"); c != 200 {
		t.Fatalf("ready: %d", c)
	}
	resp, err := http.Post(base+"/v2/models/tinycnn/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"probabilities"`) {
		t.Fatalf("infer: %d %s", resp.StatusCode, b)
	}
	if c, m := get("http://" + addrs[1] + "/metrics"); c != 200 || !strings.Contains(m, `nv_inference_request_success{model="tinycnn",version="1"} 1`) {
		t.Fatalf("metrics: %d\n%s", c, m)
	}
	cancel() // as SIGTERM
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("exit %d, want 0", c)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestServeBadFlags(t *testing.T) {
	if c := runServe(context.Background(), []string{"--http-port", "x"}, nil); c != exitError {
		t.Errorf("exit %d, want %d", c, exitError)
	}
	if c := runServe(context.Background(), []string{"--model-control-mode", "sometimes"}, nil); c != exitError {
		t.Errorf("exit %d, want %d", c, exitError)
	}
	if c := runServe(context.Background(), []string{"--model-control-mode", "poll"}, nil); c != exitError {
		t.Errorf("poll without a repository: exit %d, want %d", c, exitError)
	}
	if c := runServe(context.Background(), []string{"extra"}, nil); c != exitError {
		t.Errorf("exit %d, want %d", c, exitError)
	}
}
