// Package multigpu holds issue 16's GPU tests: a model served with
// instance_group over GPUs through kiln's server (the serve core, its gRPC
// and HTTP front ends on loopback, engines built through the plan cache as
// kiln serve builds them), checked against the CPU, and its throughput with
// 1, 2, ... N GPUs. They skip without a GPU. bench/multigpu.sh builds the
// test binary here and runs it on a GPU machine (a small binary: the
// device's carry limit is 64 MiB).
package multigpu

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/grpcapi"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

// The tests in this package need a CUDA GPU and skip without one.

func needGPU(t testing.TB) []string {
	t.Helper()
	if os.Getenv(cuda.EnvLibPath) != "" {
		t.Skipf("%s is set (the fake CUDA libraries): these tests need a real GPU", cuda.EnvLibPath)
	}
	gpus, err := cuda.VisibleGPUs(cuda.Options{})
	if err != nil || len(gpus) == 0 {
		t.Skipf("needs a CUDA GPU: %v", err)
	}
	return gpus
}
func sharedModel(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("KILN_MODELS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "models")
	}
	p := filepath.Join(dir, name, "model.onnx")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("needs the reference model %s (../shared/models or $KILN_MODELS): %v", name, err)
	}
	return p
}
func randomBatch(s *serve.Server, model string, n int, seed uint64) (string, *tensor.Tensor, error) {
	cfg, _, err := s.ModelConfig(model, "")
	if err != nil {
		return "", nil, err
	}
	in := cfg.Inputs[0]
	shape := []int{n}
	for _, d := range in.Dims {
		if d < 0 {
			return "", nil, fmt.Errorf("input %s has a variable dimension %v", in.Name, in.Dims)
		}
		shape = append(shape, int(d))
	}
	x := tensor.New(tensor.Float32, shape...)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range x.Float32s() {
		x.Float32s()[i] = r.Float32()*2 - 1
	}
	return in.Name, x, nil
}
func cosineOf(x, y []float32) float64 {
	if len(x) != len(y) {
		return math.NaN()
	}
	var ab, aa, bb float64
	for i := range x {
		ab += float64(x[i]) * float64(y[i])
		aa += float64(x[i]) * float64(x[i])
		bb += float64(y[i]) * float64(y[i])
	}
	return ab / math.Sqrt(aa*bb)
}
func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// placedServer serves the models of configs (name -> config.pbtxt), each
// with the ONNX model at onnxPath, in process, built through the plan cache
// in folder cache as kiln serve builds them, and waits until they are
// loaded.
func placedServer(t testing.TB, onnxPath, cache string, configs map[string]string) *serve.Server {
	t.Helper()
	data, err := os.ReadFile(onnxPath)
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	for name, cfg := range configs {
		os.MkdirAll(filepath.Join(repo, name, "1"), 0o755)
		if err := os.WriteFile(filepath.Join(repo, name, "1", "model.onnx"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(repo, name, "config.pbtxt"), []byte(cfg), 0o644)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	pc := &kiln.PlanCache{Dir: cache}
	// as kiln serve's loader: each model's config gives its build options
	load := func(path string, cfg *repository.Config) (*kiln.Model, error) {
		o, err := repository.BuildOptions(filepath.Dir(filepath.Dir(path)), cfg)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		m, res, err := pc.Load(context.Background(), path, o)
		if err == nil {
			log.Info("engine", "model", path, "device", o.Device, "plan", filepath.Base(res.Path), "cached", res.Hit, "took", time.Since(start))
		}
		return m, err
	}
	s := serve.New(serve.Options{Repository: repo, Logger: log, Loader: load})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

// frontEnds serves s over gRPC and HTTP on loopback, as kiln serve does,
// and returns a gRPC client and the HTTP base URL.
func frontEnds(t *testing.T, s *serve.Server) (inference.GRPCInferenceServiceClient, string) {
	t.Helper()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpcapi.ServedStats(s))
	grpcapi.Register(g, s, false)
	go g.Serve(gl)
	t.Cleanup(g.Stop)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &http.Server{Handler: httpapi.New(s, httpapi.Options{})}
	go h.Serve(hl)
	t.Cleanup(func() { h.Close() })
	cc, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return inference.NewGRPCInferenceServiceClient(cc), "http://" + hl.Addr().String()
}

// TestServeTwoInstancesOnGPU (issue 16, on one GPU): resnet_mini in FP16,
// served with instance_group gpus [0] count 2 (two execution contexts of
// one engine on GPU 0) beside the same model on the CPU, over gRPC on
// loopback; under concurrent requests of batch 1 to 4 the GPU answers as
// the CPU does (cosine >= 0.999 per request, the FP16 tolerance of the GPU
// model tests), and the HTTP statistics show both instances on cuda:0,
// each having run batches.
func TestServeTwoInstancesOnGPU(t *testing.T) {
	needGPU(t)
	path := sharedModel(t, "resnet_mini")
	s := placedServer(t, path, t.TempDir(), map[string]string{
		"gpu": "max_batch_size: 8\ninstance_group [ { count: 2 kind: KIND_GPU gpus: [0] } ]\n" +
			"parameters { key: \"precision\" value: { string_value: \"fp16\" } }\n",
		"cpu": "max_batch_size: 8\ninstance_group [ { count: 1 kind: KIND_CPU } ]\n",
	})
	c, base := frontEnds(t, s)
	meta, err := c.ModelMetadata(context.Background(), &inference.ModelMetadataRequest{Name: "gpu"})
	if err != nil {
		t.Fatal(err)
	}
	input := meta.GetInputs()[0]
	const requests, workers = 48, 8
	var next atomic.Int32
	var wg sync.WaitGroup
	var mu sync.Mutex
	worst := 1.0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				batch := 1 + i%4
				shape := append([]int64{int64(batch)}, input.GetShape()[1:]...)
				n := 1
				for _, d := range shape {
					n *= int(d)
				}
				r := rand.New(rand.NewPCG(uint64(i), 1))
				raw := make([]byte, 0, 4*n)
				for range n {
					raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(r.Float32()*2-1))
				}
				var out [2][]float32
				for k, m := range []string{"gpu", "cpu"} {
					resp, err := c.ModelInfer(context.Background(), &inference.ModelInferRequest{ModelName: m,
						Inputs: []*inference.ModelInferRequest_InferInputTensor{{Name: input.GetName(), Datatype: "FP32", Shape: shape}}, RawInputContents: [][]byte{raw}})
					if err != nil {
						t.Errorf("request %d to %s: %v", i, m, err)
						return
					}
					b := resp.GetRawOutputContents()[0]
					for j := 0; j+4 <= len(b); j += 4 {
						out[k] = append(out[k], math.Float32frombits(binary.LittleEndian.Uint32(b[j:])))
					}
				}
				cos := cosineOf(out[0], out[1])
				mu.Lock()
				worst = min(worst, cos)
				mu.Unlock()
				if !(cos >= 0.999) {
					t.Errorf("request %d (batch %d): %d outputs against %d, cosine %.6f against the CPU", i, batch, len(out[0]), len(out[1]), cos)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests: lowest cosine of the GPU's FP16 outputs against the CPU's FP32 %.6f", requests, worst)
	resp, err := http.Get(base + "/v2/models/gpu/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var st struct {
		ModelStats []struct {
			MemoryUsage []map[string]any `json:"memory_usage"`
			Instances   []struct {
				Name           string `json:"name"`
				Device         string `json:"device"`
				GPUUUID        string `json:"gpu_uuid"`
				ExecutionCount int    `json:"execution_count"`
			} `json:"instances"`
		} `json:"model_stats"`
	}
	if err := json.Unmarshal(body, &st); err != nil || len(st.ModelStats) != 1 || len(st.ModelStats[0].Instances) != 2 {
		t.Fatalf("stats %s (%v): want 2 instances", body, err)
	}
	for _, in := range st.ModelStats[0].Instances {
		t.Logf("instance %s on %s (%s): %d batches", in.Name, in.Device, in.GPUUUID, in.ExecutionCount)
		if in.Device != "cuda:0" || in.ExecutionCount == 0 {
			t.Errorf("instance %s: device %s, %d batches; want cuda:0 and some", in.Name, in.Device, in.ExecutionCount)
		}
	}
	t.Logf("memory_usage %v", st.ModelStats[0].MemoryUsage)
}

func TestMultiGPUThroughputOnGPU(t *testing.T) {
	gpus := needGPU(t)
	path := os.Getenv("KILN_MULTIGPU_MODEL")
	if path == "" {
		path = sharedModel(t, "resnet_mini")
	}
	batch := envInt(t, "KILN_MULTIGPU_BATCH", 32)
	count := envInt(t, "KILN_MULTIGPU_COUNT", 2)
	secs := envInt(t, "KILN_MULTIGPU_SECONDS", 10)
	maxN := min(envInt(t, "KILN_MULTIGPU_MAX_GPUS", len(gpus)), len(gpus))
	prec := os.Getenv("KILN_MULTIGPU_PRECISION")
	if prec == "" {
		prec = "fp16"
	}
	var one float64
	var lines []string
	cache := t.TempDir() // built once: the GPUs of one fingerprint share the plan
	for n := 1; n <= maxN; n++ {
		list := make([]string, n)
		for i := range list {
			list[i] = strconv.Itoa(i)
		}
		cfg := fmt.Sprintf("max_batch_size: %d\ninstance_group [ { count: %d kind: KIND_GPU gpus: [%s] } ]\n"+
			"parameters { key: \"precision\" value: { string_value: %q } }\n", batch, count, strings.Join(list, ", "), prec)
		s := placedServer(t, path, cache, map[string]string{"m": cfg})
		name, x, err := randomBatch(s, "m", batch, 7)
		if err != nil {
			t.Fatal(err)
		}
		req := func() error {
			_, err := s.Infer(context.Background(), &serve.InferRequest{Model: "m", Inputs: map[string]*tensor.Tensor{name: x}})
			return err
		}
		var done atomic.Int64
		var failed atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 * n * count {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := req(); err != nil {
						failed.Store(err)
						return
					}
					done.Add(1)
				}
			}()
		}
		time.Sleep(2 * time.Second) // warmup: CUDA graphs captured, clocks up
		start, before := time.Now(), done.Load()
		time.Sleep(time.Duration(secs) * time.Second)
		took, got := time.Since(start), done.Load()-before
		close(stop)
		wg.Wait()
		if err, ok := failed.Load().(error); ok {
			t.Fatalf("%d GPU(s): %v", n, err)
		}
		ips := float64(got) * float64(batch) / took.Seconds()
		if n == 1 {
			one = ips
		}
		st, _ := s.ModelStats("m", "")
		var per []string
		if len(st) == 1 {
			for _, in := range st[0].Instances {
				per = append(per, fmt.Sprintf("%s=%d", in.Device, in.ExecutionCount))
			}
		}
		line := fmt.Sprintf("gpus %d: %.0f images/s (%.2fx of 1 GPU), %d requests of batch %d in %.1fs, %d instances per GPU; batches per instance: %s",
			n, ips, ips/one, got, batch, took.Seconds(), count, strings.Join(per, " "))
		t.Log(line)
		lines = append(lines, line)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s.Shutdown(ctx)
		cancel()
	}
	if out := os.Getenv("KILN_MULTIGPU_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
}
