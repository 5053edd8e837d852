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

// TestServeBundledBuilt: kiln serve without --model-repository (the
// README's first command) serves the bundled tinycnn built into a plan
// through the plan cache, as a repository's models are (it was served
// unbuilt: its graph as exported, about 2.7x slower per request), and
// answers it; a second start loads the cached plan. With --no-build it
// still serves, with no plan written.
func TestServeBundledBuilt(t *testing.T) {
	in := examples.TinyCNNInput(1)
	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
	cache := t.TempDir()
	serveOnce := func(extra ...string) string {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		started := make(chan [3]string, 1)
		code := make(chan int, 1)
		go func() {
			code <- runServe(ctx, append([]string{"--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "-1", "--metrics-port", "-1",
				"--plan-cache", cache}, extra...), started)
		}()
		var addrs [3]string
		select {
		case addrs = <-started:
		case c := <-code:
			t.Fatalf("serve exited with %d", c)
		}
		base := "http://" + addrs[0]
		waitLoaded(t, base)
		resp, err := http.Post(base+"/v2/models/tinycnn/infer", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"probabilities"`) {
			t.Fatalf("infer: %d %s", resp.StatusCode, b)
		}
		cancel()
		<-code
		return string(b)
	}
	plans := func() []string {
		m, _ := filepath.Glob(filepath.Join(cache, "*.plan"))
		return m
	}
	first := serveOnce()
	if p := plans(); len(p) != 1 || !strings.HasPrefix(filepath.Base(p[0]), "tinycnn-") {
		t.Fatalf("plans in the cache after the first start: %v, want one tinycnn plan", p)
	}
	st, err := os.Stat(plans()[0])
	if err != nil {
		t.Fatal(err)
	}
	if second := serveOnce(); second != first {
		t.Errorf("the cached plan answers %s, the built one %s", second, first)
	}
	if st2, err := os.Stat(plans()[0]); err != nil || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("the second start rebuilt the plan (%v)", err)
	}
	os.RemoveAll(cache)
	os.MkdirAll(cache, 0o755)
	serveOnce("--no-build")
	if p := plans(); len(p) != 0 {
		t.Errorf("--no-build wrote plans: %v", p)
	}
}
