// Package servebench holds a load benchmark of kiln's inference server
// (issue 5): throughput and latency percentiles against concurrency, with
// and without dynamic batching, over loopback HTTP, plus the server's own
// per-request overhead for the bundled tiny model. It has only tests; the
// benchmark runs when KILN_SERVE_BENCH=1 is set.
package servebench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/tensor"
)

const (
	configOff = "max_batch_size: 8\ninstance_group [ { count: 1 kind: KIND_CPU } ]\n"
	configOn  = configOff + "dynamic_batching {\n  preferred_batch_size: [ 4, 8 ]\n  max_queue_delay_microseconds: 2000\n}\n"
)

// envDuration reads a duration from the environment, or returns def.
func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// sharedModels returns the absolute path of ../shared/models, found by
// walking up from the package directory.
func sharedModels() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, "..", "shared", "models")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return filepath.Clean(p)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// startServer writes a one-model repository and serves it on loopback HTTP,
// as serve/httpapi's own tests do.
func startServer(t *testing.T, name string, model func(dst string) error, config string) (*httptest.Server, *serve.Server) {
	t.Helper()
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, name, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := model(filepath.Join(repo, name, "1", "model.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	s := serve.New(serve.Options{Repository: repo})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	t.Cleanup(func() { ts.Close(); s.Shutdown(context.Background()) })
	return ts, s
}

// binaryRequest builds a KServe v2 infer body with the input as binary data
// and asks for binary outputs.
func binaryRequest(input string, x *tensor.Tensor) ([]byte, int) {
	h, _ := json.Marshal(map[string]any{
		"inputs": []any{map[string]any{"name": input, "shape": x.Shape, "datatype": "FP32",
			"parameters": map[string]any{"binary_data_size": len(x.Data)}}},
		"parameters": map[string]any{"binary_data_output": true},
	})
	return append(h, x.Data...), len(h)
}

// result is one load level's measurements.
type result struct {
	n, errs       int
	rps           float64
	p50, p99, avg time.Duration
}

// load runs conc closed-loop clients for d and returns the latencies of
// the successful requests.
func load(client *http.Client, url string, body []byte, hlen, conc int, d time.Duration) result {
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	hl := strconv.Itoa(hlen)
	start := time.Now()
	end := start.Add(d)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(end) {
				t0 := time.Now()
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set(httpapi.HeaderLength, hl)
				resp, err := client.Do(req)
				if err != nil {
					bad++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	r := result{n: len(lats), errs: errs}
	if len(lats) == 0 {
		return r
	}
	slices.Sort(lats)
	var sum time.Duration
	for _, l := range lats {
		sum += l
	}
	r.rps = float64(len(lats)) / el.Seconds()
	r.p50 = lats[len(lats)/2]
	r.p99 = lats[min(len(lats)-1, len(lats)*99/100)]
	r.avg = sum / time.Duration(len(lats))
	return r
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// counts returns the model's total inference and execution counts.
func counts(t *testing.T, s *serve.Server, name string) (inf, exec uint64) {
	t.Helper()
	st, err := s.ModelStats(name, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range st {
		inf += v.InferenceCount
		exec += v.ExecutionCount
	}
	return inf, exec
}

// TestServeLoad measures throughput and P50/P99 latency against
// concurrency, with and without dynamic batching, for resnet_mini and
// mobilenet_v2, and the server's per-request overhead for tinycnn.
// KILN_SERVE_BENCH_DURATION (default 3s) sets the time per level.
func TestServeLoad(t *testing.T) {
	if os.Getenv("KILN_SERVE_BENCH") != "1" {
		t.Skip("load benchmark; run with KILN_SERVE_BENCH=1 go test -run TestServeLoad -v -timeout 10m ./bench/servebench/")
	}
	dur := envDuration("KILN_SERVE_BENCH_DURATION", 3*time.Second)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 0}}
	t.Cleanup(client.CloseIdleConnections)
	t.Logf("GOMAXPROCS=%d, %v per level", runtime.GOMAXPROCS(0), dur)

	t.Run("overhead", func(t *testing.T) {
		ts, _ := startServer(t, "tinycnn", func(dst string) error {
			return os.WriteFile(dst, examples.TinyCNNModel, 0o644)
		}, configOff)
		x := examples.TinyCNNInput(1)
		body, hlen := binaryRequest("image", x)
		url := ts.URL + "/v2/models/tinycnn/infer"
		load(client, url, body, hlen, 1, dur/6) // warm-up
		r := load(client, url, body, hlen, 1, dur)
		if r.n == 0 || r.errs > 0 {
			t.Fatalf("HTTP: %d ok, %d failed", r.n, r.errs)
		}
		m, err := kiln.LoadBytes(examples.TinyCNNModel)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		in := map[string]*tensor.Tensor{"image": x}
		run := func(until time.Time) (int, time.Duration) {
			n, t0 := 0, time.Now()
			for time.Now().Before(until) {
				if _, err := m.Run(context.Background(), in); err != nil {
					t.Fatal(err)
				}
				n++
			}
			return n, time.Since(t0)
		}
		run(time.Now().Add(dur / 6))
		n, el := run(time.Now().Add(dur))
		dm := el / time.Duration(n)
		fmt.Printf("\n| model | HTTP mean ms (c=1) | HTTP P50 ms | direct Model.Run mean ms | overhead ms/request |\n| --- | --- | --- | --- | --- |\n")
		fmt.Printf("| tinycnn [1,3,32,32] | %.3f | %.3f | %.3f | %.3f |\n\n", ms(r.avg), ms(r.p50), ms(dm), ms(r.avg-dm))
	})

	root := sharedModels()
	fmt.Printf("| model | batching | concurrency | requests/s | P50 ms | P99 ms | mean batch | errors |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, name := range []string{"resnet_mini", "mobilenet_v2"} {
		for _, mode := range []struct {
			name, config string
		}{{"off", configOff}, {"on", configOn}} {
			t.Run(name+"/batching_"+mode.name, func(t *testing.T) {
				src := filepath.Join(root, name, "model.onnx")
				if _, err := os.Stat(src); root == "" || err != nil {
					t.Skipf("needs ../shared/models/%s/model.onnx", name)
				}
				ts, s := startServer(t, name, func(dst string) error { return os.Symlink(src, dst) }, mode.config)
				cfg, _, err := s.ModelConfig(name, "")
				if err != nil {
					t.Fatal(err)
				}
				if len(cfg.Inputs) == 0 {
					t.Fatal("model config has no inputs")
				}
				x := tensor.New(tensor.Float32, 1, 3, 224, 224)
				for i, f := 0, x.Float32s(); i < len(f); i++ {
					f[i] = float32(i%255) / 255
				}
				body, hlen := binaryRequest(cfg.Inputs[0].Name, x)
				url := ts.URL + "/v2/models/" + name + "/infer"
				load(client, url, body, hlen, 1, dur/6) // warm-up
				for _, conc := range []int{1, 4, 16, 64} {
					i0, e0 := counts(t, s, name)
					r := load(client, url, body, hlen, conc, dur)
					i1, e1 := counts(t, s, name)
					batch := "n/a"
					if e1 > e0 {
						batch = fmt.Sprintf("%.2f", float64(i1-i0)/float64(e1-e0))
					}
					fmt.Printf("| %s | %s | %d | %.1f | %.1f | %.1f | %s | %d |\n", name, mode.name, conc, r.rps, ms(r.p50), ms(r.p99), batch, r.errs)
					if r.n == 0 {
						t.Errorf("concurrency %d: no successful request (%d failed)", conc, r.errs)
					}
				}
			})
		}
	}
}
