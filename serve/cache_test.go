package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/grpcapi"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/serve/metrics"
	"github.com/kilnai/kiln/tensor"
)

// TestResponseCache serves tinycnn with and without response_cache, and a
// stateful model that asks for it, over real HTTP and gRPC servers.
func TestResponseCache(t *testing.T) {
	dir := t.TempDir()
	put := func(name, cfg string, model []byte) {
		if err := os.MkdirAll(filepath.Join(dir, name, "1"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name, "config.pbtxt"), []byte(cfg), 0o644)
		os.WriteFile(filepath.Join(dir, name, "1", "model.onnx"), model, 0o644)
	}
	tiny := "max_batch_size: 8\ninput [ { name: \"image\" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] } ]\n" +
		"output [ { name: \"probabilities\" data_type: TYPE_FP32 dims: [ 10 ] } ]\n"
	put("cached", tiny+"response_cache { enable: true }\n", examples.TinyCNNModel)
	put("plain", tiny, examples.TinyCNNModel)
	acc, err := os.ReadFile("testdata/sequence/accumulate/1/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	seqCfg, err := os.ReadFile("testdata/sequence/accumulate/config.pbtxt")
	if err != nil {
		t.Fatal(err)
	}
	put("accumulate", string(seqCfg)+"response_cache { enable: true }\n", acc)

	m := metrics.New(nil)
	s := serve.New(serve.Options{Repository: dir, Observer: m, CacheBytes: 1 << 20})
	m.SetPending(s)
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(httpapi.New(s, httpapi.Options{}))
	ms := httptest.NewServer(m.Handler())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	grpcapi.Register(g, s, false)
	go g.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); g.Stop(); hs.Close(); ms.Close(); s.Shutdown(context.Background()) })
	gc := inference.NewGRPCInferenceServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	post := func(path string, body []byte) []byte {
		t.Helper()
		resp, err := http.Post(hs.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	image := func(seed float32) *tensor.Tensor {
		in := examples.TinyCNNInput(1)
		v := in.Float32s()
		v[0] = seed
		return in
	}
	httpInfer := func(model string, in *tensor.Tensor) string {
		body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "image", "shape": in.Shape, "datatype": "FP32", "data": in.Float32s()}}})
		var r struct{ Outputs []struct{ Data []float32 } }
		if err := json.Unmarshal(post("/v2/models/"+model+"/infer", body), &r); err != nil || len(r.Outputs) != 1 {
			t.Fatalf("infer %s: %v %v", model, r, err)
		}
		return fmt.Sprint(r.Outputs[0].Data)
	}
	grpcInfer := func(model string, in *tensor.Tensor) string {
		req, err := api.NewInferRequest(model, map[string]*tensor.Tensor{"image": in})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := gc.ModelInfer(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		outs, err := api.ResponseTensors(resp)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(outs["probabilities"].Float32s())
	}
	type counts struct{ success, hit, miss, exec, inferences, queue uint64 }
	httpStats := func(model string) counts {
		t.Helper()
		resp, err := http.Get(hs.URL + "/v2/models/" + model + "/stats")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			ModelStats []struct {
				InferenceCount uint64                                `json:"inference_count"`
				ExecutionCount uint64                                `json:"execution_count"`
				InferenceStats map[string]struct{ Count, Ns uint64 } `json:"inference_stats"`
			} `json:"model_stats"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || len(st.ModelStats) != 1 {
			t.Fatalf("stats of %s: %v %v", model, st, err)
		}
		ms := st.ModelStats[0]
		is := ms.InferenceStats
		return counts{is["success"].Count, is["cache_hit"].Count, is["cache_miss"].Count, ms.ExecutionCount, ms.InferenceCount, is["queue"].Count}
	}

	a, b := image(0.25), image(0.75)
	steps := []struct {
		name, model, proto string
		in                 *tensor.Tensor
		want               counts
	}{
		{"first: a miss, computed", "cached", "http", a, counts{success: 1, miss: 1, exec: 1, inferences: 1, queue: 1}},
		{"same input: a hit", "cached", "http", a, counts{success: 2, hit: 1, miss: 1, exec: 1, inferences: 1, queue: 1}},
		{"same input over gRPC: a hit", "cached", "grpc", a, counts{success: 3, hit: 2, miss: 1, exec: 1, inferences: 1, queue: 1}},
		{"another input: a miss", "cached", "grpc", b, counts{success: 4, hit: 2, miss: 2, exec: 2, inferences: 2, queue: 2}},
		{"it is cached too", "cached", "http", b, counts{success: 5, hit: 3, miss: 2, exec: 2, inferences: 2, queue: 2}},
		{"no response_cache: never cached", "plain", "http", a, counts{success: 1, exec: 1, inferences: 1, queue: 1}},
		{"no response_cache, again", "plain", "grpc", a, counts{success: 2, exec: 2, inferences: 2, queue: 2}},
	}
	answers := map[*tensor.Tensor]string{}
	for _, st := range steps {
		got := ""
		if st.proto == "http" {
			got = httpInfer(st.model, st.in)
		} else {
			got = grpcInfer(st.model, st.in)
		}
		if prev, ok := answers[st.in]; ok && prev != got {
			t.Fatalf("%s: answer %s, earlier %s", st.name, got, prev)
		}
		answers[st.in] = got
		if c := httpStats(st.model); c != st.want {
			t.Fatalf("%s: stats %+v, want %+v", st.name, c, st.want)
		}
	}
	gst, err := gc.ModelStatistics(ctx, &inference.ModelStatisticsRequest{Name: "cached"})
	if err != nil || gst.GetModelStats()[0].GetInferenceStats().GetCacheHit().GetCount() != 3 ||
		gst.GetModelStats()[0].GetInferenceStats().GetCacheMiss().GetCount() != 2 {
		t.Fatalf("gRPC statistics: %v %v", gst, err)
	}
	// memory usage (tinycnn's weights and arenas) and response statistics
	g0 := gst.GetModelStats()[0]
	if mu := g0.GetMemoryUsage(); len(mu) != 1 || mu[0].GetType() != "CPU" || mu[0].GetByteSize() < 1000 {
		t.Fatalf("gRPC memory usage: %v", mu)
	}
	if r := g0.GetResponseStats()["0"]; r.GetSuccess().GetCount() != 5 || r.GetComputeInfer().GetCount() != 2 || r.GetFail().GetCount() != 0 {
		t.Fatalf("gRPC response stats: %v", g0.GetResponseStats())
	}
	hresp, err := http.Get(hs.URL + "/v2/models/cached/stats")
	if err != nil {
		t.Fatal(err)
	}
	var hst struct {
		ModelStats []struct {
			MemoryUsage []struct {
				Type     string `json:"type"`
				ByteSize uint64 `json:"byte_size"`
			} `json:"memory_usage"`
			ResponseStats map[string]map[string]struct{ Count uint64 } `json:"response_stats"`
		} `json:"model_stats"`
	}
	err = json.NewDecoder(hresp.Body).Decode(&hst)
	hresp.Body.Close()
	if err != nil || len(hst.ModelStats) != 1 || len(hst.ModelStats[0].MemoryUsage) != 1 ||
		hst.ModelStats[0].MemoryUsage[0].ByteSize != mu0(g0) || hst.ModelStats[0].ResponseStats["0"]["success"].Count != 5 ||
		hst.ModelStats[0].ResponseStats["0"]["compute_output"].Count != 2 {
		t.Fatalf("HTTP memory usage and response stats: %+v %v", hst, err)
	}

	// a stateful model never caches: the same input twice accumulates
	seq := func(start, end bool) float32 {
		body := fmt.Sprintf(`{"parameters":{"sequence_id":7,"sequence_start":%v,"sequence_end":%v},"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1]}]}`, start, end)
		var r struct{ Outputs []struct{ Data []float32 } }
		if err := json.Unmarshal(post("/v2/models/accumulate/infer", []byte(body)), &r); err != nil || len(r.Outputs) != 1 {
			t.Fatalf("sequence: %v %v", r, err)
		}
		return r.Outputs[0].Data[0]
	}
	if y1, y2 := seq(true, false), seq(false, true); y1 != 1 || y2 != 2 {
		t.Fatalf("stateful model answered %v then %v, want 1 then 2", y1, y2)
	}
	if c := httpStats("accumulate"); c.hit+c.miss != 0 {
		t.Fatalf("stateful model cache stats %+v", c)
	}

	resp, err := http.Get(ms.URL)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		`nv_cache_num_hits_per_model{model="cached",version="1"} 3`,
		`nv_cache_num_misses_per_model{model="cached",version="1"} 2`,
		`nv_cache_num_entries 2`,
		`nv_inference_request_success{model="cached",version="1"} 5`,
	} {
		if !strings.Contains(string(text), line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	if u, ok := s.CacheUsage(); !ok || u.Entries != 2 || u.Bytes <= 0 || u.Bytes > 1<<20 {
		t.Fatalf("cache usage %+v %v", u, ok)
	}
}

func mu0(s *inference.ModelStatistics) uint64 { return s.GetMemoryUsage()[0].GetByteSize() }

// TestResponseCacheOff: without a cache bound, response_cache asks for
// nothing, and the model serves as usual.
func TestResponseCacheOff(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "cached", "1"), 0o755)
	os.WriteFile(filepath.Join(dir, "cached", "config.pbtxt"), []byte("max_batch_size: 8\nresponse_cache { enable: true }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cached", "1", "model.onnx"), examples.TinyCNNModel, 0o644)
	s := serve.New(serve.Options{Repository: dir})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	for range 2 {
		if _, err := s.Infer(context.Background(), &serve.InferRequest{Model: "cached", Inputs: map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)}}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.ModelStats("cached", "")
	if err != nil || st[0].CacheHitCount+st[0].CacheMissCount != 0 || st[0].ExecutionCount != 2 {
		t.Fatalf("stats %+v %v", st, err)
	}
	if _, ok := s.CacheUsage(); ok {
		t.Fatal("a cache without a bound")
	}
}
