package grpcapi

import (
	"context"
	"errors"
	"math"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/tensor"
)

func start(t *testing.T) inference.GRPCInferenceServiceClient {
	t.Helper()
	s := serve.New(serve.Options{})
	rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(rm); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	Register(g, s, false)
	go g.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); g.Stop(); s.Shutdown(context.Background()) })
	return inference.NewGRPCInferenceServiceClient(cc)
}

func TestModelInfer(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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
	req, err := api.NewInferRequest("tinycnn", map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	req.Id = "7"
	resp, err := c.ModelInfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := api.ResponseTensors(resp)
	if err != nil {
		t.Fatal(err)
	}
	got, exp := outs["probabilities"].Float32s(), want["probabilities"].Float32s()
	if resp.GetId() != "7" || resp.GetModelVersion() != "1" || len(got) != len(exp) {
		t.Fatalf("response %v", resp)
	}
	for i := range got {
		if math.Abs(float64(got[i]-exp[i])) > 1e-6 {
			t.Fatalf("output %d = %v, want %v", i, got[i], exp[i])
		}
	}

}

func TestErrorsAndMetadata(t *testing.T) {
	c := start(t)
	ctx := context.Background()
	if r, err := c.ServerReady(ctx, &inference.ServerReadyRequest{}); err != nil || !r.GetReady() {
		t.Errorf("ServerReady: %v %v", r, err)
	}
	md, err := c.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "tinycnn"})
	if err != nil || md.GetInputs()[0].GetDatatype() != "FP32" || md.GetInputs()[0].GetShape()[0] != -1 {
		t.Errorf("ModelMetadata: %v %v", md, err)
	}
	bad, _ := api.NewInferRequest("tinycnn", map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 1, 2)})
	unknown, _ := api.NewInferRequest("nope", map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)})
	tests := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"unknown model", func() error { _, err := c.ModelInfer(ctx, unknown); return err }, codes.NotFound},
		{"bad shape", func() error { _, err := c.ModelInfer(ctx, bad); return err }, codes.InvalidArgument},
		{"load refused", func() error {
			_, err := c.RepositoryModelLoad(ctx, &inference.RepositoryModelLoadRequest{ModelName: "x"})
			return err
		}, codes.Unimplemented},
	}
	for _, tt := range tests {
		if got := status.Code(tt.call()); got != tt.code {
			t.Errorf("%s: code %v, want %v", tt.name, got, tt.code)
		}
	}
	idx, err := c.RepositoryIndex(ctx, &inference.RepositoryIndexRequest{})
	if err != nil || len(idx.GetModels()) != 1 || idx.GetModels()[0].GetState() != "READY" {
		t.Errorf("RepositoryIndex: %v %v", idx, err)
	}
	stats, err := c.ModelStatistics(ctx, &inference.ModelStatisticsRequest{Name: "tinycnn"})
	if err != nil || stats.GetModelStats()[0].GetInferenceStats().GetFail().GetCount() != 1 {
		t.Errorf("ModelStatistics: %v %v", stats, err)
	}
}

func TestStreamInfer(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := api.NewInferRequest("tinycnn", map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)})
	bad, _ := api.NewInferRequest("nope", map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)})
	for _, r := range []*inference.ModelInferRequest{good, bad, good} {
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	st.CloseSend()
	for i := range 3 {
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if (i == 1) != (r.GetErrorMessage() != "") {
			t.Errorf("reply %d: %v", i, r)
		}
	}
}

func TestCode(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
	}{
		{serve.ErrQueueFull, codes.ResourceExhausted},
		{serve.ErrNotReady, codes.Unavailable},
		{serve.ErrInvalid, codes.InvalidArgument},
		{api.ErrContents, codes.InvalidArgument},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{serve.ErrWarmup, codes.InvalidArgument},
		{errors.New("x"), codes.Internal},
	}
	for _, tt := range tests {
		if got := Code(tt.err); got != tt.code {
			t.Errorf("Code(%v) = %v, want %v", tt.err, got, tt.code)
		}
	}
}
