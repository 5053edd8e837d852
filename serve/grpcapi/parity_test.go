package grpcapi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/tensor"
)

// repoModel is a model folder of a test repository.
type repoModel struct {
	name, config string
	files        map[string][]byte // more files of the model folder
}

// startRepo serves a repository of tinycnn models over gRPC on loopback,
// with explicit model control and the given receive limit (0: grpc-go's).
func startRepo(t *testing.T, maxRecv int, models ...repoModel) (inference.GRPCInferenceServiceClient, *serve.Server, string) {
	t.Helper()
	dir := t.TempDir()
	for _, m := range models {
		p := filepath.Join(dir, m.name, "1")
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "model.onnx"), examples.TinyCNNModel, 0o644); err != nil {
			t.Fatal(err)
		}
		if m.config != "" {
			os.WriteFile(filepath.Join(dir, m.name, "config.pbtxt"), []byte(m.config), 0o644)
		}
		for f, b := range m.files {
			os.WriteFile(filepath.Join(dir, m.name, f), b, 0o644)
		}
	}
	s := serve.New(serve.Options{Repository: dir})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if maxRecv > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(maxRecv))
	}
	g := grpc.NewServer(opts...)
	Register(g, s, true)
	go g.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); g.Stop(); s.Shutdown(context.Background()) })
	return inference.NewGRPCInferenceServiceClient(cc), s, dir
}

// TestModelReadyNotLoaded (issue 14, item 5): ModelReady answers
// ready=false, not NOT_FOUND, for an unknown model, an unknown version and
// an unloaded model, as Triton does, so that a client's wait-for-load loop
// works; a ready model is ready again once loaded.
func TestModelReadyNotLoaded(t *testing.T) {
	c, _, _ := startRepo(t, 0, repoModel{name: "tinycnn"}, repoModel{name: "other"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.RepositoryModelUnload(ctx, &inference.RepositoryModelUnloadRequest{ModelName: "other"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, model, version string
		ready                bool
		code                 codes.Code
	}{
		{"loaded", "tinycnn", "", true, codes.OK},
		{"loaded version", "tinycnn", "1", true, codes.OK},
		{"unknown model", "nope", "", false, codes.OK},
		{"unknown version", "tinycnn", "7", false, codes.OK},
		{"unloaded model", "other", "", false, codes.OK},
		{"bad version", "tinycnn", "01", false, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := c.ModelReady(ctx, &inference.ModelReadyRequest{Name: tt.model, Version: tt.version})
			if status.Code(err) != tt.code || r.GetReady() != tt.ready {
				t.Fatalf("ModelReady(%q, %q) = %v, %v; want ready=%v, code %v", tt.model, tt.version, r, err, tt.ready, tt.code)
			}
		})
	}
	// a client waiting for "other" sees it ready once loaded
	if _, err := c.RepositoryModelLoad(ctx, &inference.RepositoryModelLoadRequest{ModelName: "other"}); err != nil {
		t.Fatal(err)
	}
	if r, err := c.ModelReady(ctx, &inference.ModelReadyRequest{Name: "other"}); err != nil || !r.GetReady() {
		t.Fatalf("after load: %v %v", r, err)
	}
}

// TestGzipRequests (issue 14, item 5): gzip-compressed requests (grpc-go's
// gzip compressor, as Triton's clients use) are served, and the
// decompressed size of a message is bounded by the server's receive limit:
// a small message that expands past it is RESOURCE_EXHAUSTED.
func TestGzipRequests(t *testing.T) {
	const limit = 1 << 20
	c, _, _ := startRepo(t, limit, repoModel{name: "tinycnn"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := examples.TinyCNNInput(2)
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want, err := m.Run(ctx, map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	good, err := api.NewInferRequest("tinycnn", map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	// 64 MiB of zeros: about 64 KiB on the wire, 64 times the limit expanded
	bomb, _ := api.NewInferRequest("tinycnn", map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 4<<20, 1)})
	tests := []struct {
		name string
		req  *inference.ModelInferRequest
		code codes.Code
	}{
		{"inference", good, codes.OK},
		{"zip bomb", bomb, codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.ModelInfer(ctx, tt.req, grpc.UseCompressor(gzip.Name))
			if status.Code(err) != tt.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tt.code)
			}
			if err != nil {
				return
			}
			outs, err := api.ResponseTensors(resp)
			if err != nil {
				t.Fatal(err)
			}
			got, exp := outs["probabilities"].Float32s(), want["probabilities"].Float32s()
			if len(got) != len(exp) {
				t.Fatalf("%d outputs, want %d", len(got), len(exp))
			}
			for i := range got {
				if got[i] != exp[i] {
					t.Fatalf("output %d = %v, want %v", i, got[i], exp[i])
				}
			}
		})
	}
}

// TestLoadOverrideGRPC (issue 14, item 5): RepositoryModelLoad with a
// "config" string_param and "file:<path>" bytes_params loads with them; a
// bad override is INVALID_ARGUMENT naming the field, a file cannot leave
// the model folder, an unknown parameter is refused.
func TestLoadOverrideGRPC(t *testing.T) {
	c, _, _ := startRepo(t, 0, repoModel{name: "tinycnn"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	str := func(s string) *inference.ModelRepositoryParameter {
		return &inference.ModelRepositoryParameter{ParameterChoice: &inference.ModelRepositoryParameter_StringParam{StringParam: s}}
	}
	byt := func(b []byte) *inference.ModelRepositoryParameter {
		return &inference.ModelRepositoryParameter{ParameterChoice: &inference.ModelRepositoryParameter_BytesParam{BytesParam: b}}
	}
	type params = map[string]*inference.ModelRepositoryParameter
	tests := []struct {
		name, model string
		params      params
		code        codes.Code
		contains    string
		batch       int32 // max_batch_size served after, 0: not checked
	}{
		{"config override", "tinycnn", params{"config": str(`{"max_batch_size": 4}`)}, codes.OK, "", 4},
		{"wrong type", "tinycnn", params{"config": str(`{"max_batch_size": "x"}`)}, codes.InvalidArgument, "max_batch_size", 4},
		{"invalid value", "tinycnn", params{"config": str(`{"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [9]}}`)},
			codes.InvalidArgument, "preferred_batch_size", 4},
		{"config not a string", "tinycnn", params{"config": byt([]byte(`{}`))}, codes.InvalidArgument, "config", 4},
		{"unknown parameter", "tinycnn", params{"reload": str("yes")}, codes.InvalidArgument, "reload", 4},
		{"file outside", "fresh", params{"config": str(`{}`), "file:../x/model.onnx": byt(examples.TinyCNNModel)},
			codes.InvalidArgument, "inside the model folder", 0},
		{"model from files", "fresh", params{"config": str(`{"max_batch_size": 2}`), "file:1/model.onnx": byt(examples.TinyCNNModel)},
			codes.OK, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.RepositoryModelLoad(ctx, &inference.RepositoryModelLoadRequest{ModelName: tt.model, Parameters: tt.params})
			if status.Code(err) != tt.code || err != nil && !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("load: %v, want %v containing %q", err, tt.code, tt.contains)
			}
			if tt.batch == 0 {
				return
			}
			cfg, err := c.ModelConfig(ctx, &inference.ModelConfigRequest{Name: tt.model})
			if err != nil || cfg.GetConfig().GetMaxBatchSize() != tt.batch {
				t.Fatalf("config after: max_batch_size %d (%v), want %d", cfg.GetConfig().GetMaxBatchSize(), err, tt.batch)
			}
		})
	}
}

// TestBatchStats (issue 14, item 5): ModelStatistics has batch_stats, the
// runs by batch size with their compute input, infer and output times.
func TestBatchStats(t *testing.T) {
	c, _, _ := startRepo(t, 0, repoModel{name: "tinycnn"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range []int{1, 3, 1} {
		req, _ := api.NewInferRequest("tinycnn", map[string]*tensor.Tensor{"image": examples.TinyCNNInput(n)})
		if _, err := c.ModelInfer(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	st, err := c.ModelStatistics(ctx, &inference.ModelStatisticsRequest{Name: "tinycnn"})
	if err != nil {
		t.Fatal(err)
	}
	ms := st.GetModelStats()[0]
	want := map[uint64]uint64{1: 2, 3: 1}
	var runs uint64
	for _, b := range ms.GetBatchStats() {
		if want[b.GetBatchSize()] != b.GetComputeInfer().GetCount() || b.GetComputeInput().GetCount() != b.GetComputeInfer().GetCount() ||
			b.GetComputeOutput().GetCount() != b.GetComputeInfer().GetCount() || b.GetComputeInfer().GetNs() == 0 {
			t.Errorf("batch_stats %v, want counts by batch size %v", b, want)
		}
		delete(want, b.GetBatchSize())
		runs += b.GetComputeInfer().GetCount()
	}
	if len(want) > 0 || runs != ms.GetExecutionCount() {
		t.Errorf("batch_stats %v: missing %v, %d runs, execution_count %d", ms.GetBatchStats(), want, runs, ms.GetExecutionCount())
	}
}
