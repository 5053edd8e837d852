package api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const modelName = "tinycnn"

// testService is a minimal GRPCInferenceService over one kiln model, enough
// to exercise the wire types and the client; kiln serve implements the
// real one.
type testService struct {
	inference.UnimplementedGRPCInferenceServiceServer
	model *kiln.Model
}

func (s *testService) ServerLive(context.Context, *inference.ServerLiveRequest) (*inference.ServerLiveResponse, error) {
	return &inference.ServerLiveResponse{Live: true}, nil
}

func (s *testService) ServerReady(context.Context, *inference.ServerReadyRequest) (*inference.ServerReadyResponse, error) {
	return &inference.ServerReadyResponse{Ready: true}, nil
}

func (s *testService) ModelReady(_ context.Context, r *inference.ModelReadyRequest) (*inference.ModelReadyResponse, error) {
	return &inference.ModelReadyResponse{Ready: r.GetName() == modelName}, nil
}

func (s *testService) ModelInfer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	if r.GetModelName() != modelName || (r.GetModelVersion() != "" && r.GetModelVersion() != "1") {
		return nil, status.Errorf(codes.NotFound, "unknown model %q version %q", r.GetModelName(), r.GetModelVersion())
	}
	ins, err := api.RequestTensors(r)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	outs, err := s.model.Run(ctx, ins)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if len(r.GetOutputs()) > 0 {
		picked := map[string]*tensor.Tensor{}
		for _, o := range r.GetOutputs() {
			t, ok := outs[o.GetName()]
			if !ok {
				return nil, status.Errorf(codes.InvalidArgument, "unknown output %q", o.GetName())
			}
			picked[o.GetName()] = t
		}
		outs = picked
	}
	return api.NewInferResponse(modelName, "1", r.GetId(), outs)
}

func (s *testService) ServerMetadata(context.Context, *inference.ServerMetadataRequest) (*inference.ServerMetadataResponse, error) {
	return &inference.ServerMetadataResponse{Name: "kiln-test", Version: "0", Extensions: []string{"model_repository"}}, nil
}

func (s *testService) ModelMetadata(_ context.Context, r *inference.ModelMetadataRequest) (*inference.ModelMetadataResponse, error) {
	if r.GetName() != modelName {
		return nil, status.Errorf(codes.NotFound, "unknown model %q", r.GetName())
	}
	md := &inference.ModelMetadataResponse{Name: modelName, Versions: []string{"1"}, Platform: "onnx"}
	for _, in := range s.model.Inputs() {
		dt, _ := api.Datatype(in.DType)
		md.Inputs = append(md.Inputs, &inference.ModelMetadataResponse_TensorMetadata{Name: in.Name, Datatype: dt, Shape: api.WireShape(in.Shape)})
	}
	return md, nil
}

// ModelStreamInfer answers each request in turn, errors in-band.
func (s *testService) ModelStreamInfer(st grpc.BidiStreamingServer[inference.ModelInferRequest, inference.ModelStreamInferResponse]) error {
	for {
		req, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		resp, err := s.ModelInfer(st.Context(), req)
		out := &inference.ModelStreamInferResponse{InferResponse: resp}
		if err != nil {
			out = &inference.ModelStreamInferResponse{ErrorMessage: err.Error(), InferResponse: &inference.ModelInferResponse{Id: req.GetId()}}
		}
		if err := st.Send(out); err != nil {
			return err
		}
	}
}

// startServer serves testService and gRPC health checking on a loopback
// port and returns its address and the model it runs.
func startServer(t *testing.T) (string, *kiln.Model) {
	t.Helper()
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	inference.RegisterGRPCInferenceServiceServer(srv, &testService{model: m})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("inference.GRPCInferenceService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)
	t.Cleanup(func() {
		srv.Stop()
		m.Close()
	})
	return lis.Addr().String(), m
}

func dial(t *testing.T, addr string) *api.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := api.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientLoopback(t *testing.T) {
	addr, m := startServer(t)
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, tt := range []struct {
		name string
		call func() (bool, error)
		want bool
	}{
		{"live", func() (bool, error) { return c.ServerLive(ctx) }, true},
		{"ready", func() (bool, error) { return c.ServerReady(ctx) }, true},
		{"model ready", func() (bool, error) { return c.ModelReady(ctx, modelName, "") }, true},
		{"other model not ready", func() (bool, error) { return c.ModelReady(ctx, "nope", "") }, false},
	} {
		got, err := tt.call()
		if err != nil || got != tt.want {
			t.Errorf("%s = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}

	in := examples.TinyCNNInput(2)
	want, err := m.Run(ctx, map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Infer(ctx, modelName, map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("outputs %v, want %v", slices.Collect(mapKeys(got)), slices.Collect(mapKeys(want)))
	}
	for name, w := range want {
		g := got[name]
		if g == nil || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("output %q over gRPC differs from a direct run: %+v vs %+v", name, g, w)
		}
	}
	if p := got["probabilities"]; p == nil || !slices.Equal(p.Shape, []int{2, 10}) {
		t.Errorf("probabilities = %+v, want shape [2 10]", p)
	}
}

func mapKeys(m map[string]*tensor.Tensor) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestGeneratedClientLoopback talks to the server through the generated
// client only, with typed fp32_contents as KServe's and Triton's clients may
// send them.
func TestGeneratedClientLoopback(t *testing.T) {
	addr, m := startServer(t)
	c := dial(t, addr)
	rpc := c.RPC()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	in := examples.TinyCNNInput(1)
	want, err := m.Run(ctx, map[string]*tensor.Tensor{"image": in})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rpc.ModelInfer(ctx, &inference.ModelInferRequest{
		ModelName: modelName,
		Id:        "req-7",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{{
			Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32},
			Contents: &inference.InferTensorContents{Fp32Contents: in.Float32s()},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetId() != "req-7" || resp.GetModelName() != modelName {
		t.Errorf("response id %q model %q", resp.GetId(), resp.GetModelName())
	}
	if len(resp.Outputs) != 1 || resp.Outputs[0].Datatype != "FP32" || !slices.Equal(resp.Outputs[0].Shape, []int64{1, 10}) {
		t.Fatalf("outputs = %v", resp.Outputs)
	}
	got, err := api.ResponseTensors(resp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got["probabilities"].Data, want["probabilities"].Data) {
		t.Errorf("probabilities %v, want %v", got["probabilities"].Float32s(), want["probabilities"].Float32s())
	}

	hc := healthpb.NewHealthClient(c.Conn())
	for _, svc := range []string{"", "inference.GRPCInferenceService"} {
		h, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, %v; want SERVING", svc, h.GetStatus(), err)
		}
	}
}

func TestClientErrors(t *testing.T) {
	addr, _ := startServer(t)
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	img := examples.TinyCNNInput(1)

	tests := []struct {
		name   string
		model  string
		inputs map[string]*tensor.Tensor
		code   codes.Code
		local  error
	}{
		{"unknown model", "nope", map[string]*tensor.Tensor{"image": img}, codes.NotFound, nil},
		{"wrong input name", modelName, map[string]*tensor.Tensor{"x": img}, codes.InvalidArgument, nil},
		{"wrong shape", modelName, map[string]*tensor.Tensor{"image": tensor.New(tensor.Float32, 1, 3, 8)}, codes.InvalidArgument, nil},
		{"bad tensor is caught before sending", modelName, map[string]*tensor.Tensor{"image": {DType: tensor.Float32, Shape: []int{4}}}, codes.OK, api.ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := c.Infer(ctx, tt.model, tt.inputs)
			if err == nil {
				t.Fatalf("Infer = %v, want an error", out)
			}
			if tt.local != nil {
				if !errors.Is(err, tt.local) {
					t.Fatalf("error %v, want %v", err, tt.local)
				}
				return
			}
			if got := status.Code(err); got != tt.code {
				t.Fatalf("status %v (%v), want %v", got, err, tt.code)
			}
		})
	}

	// Malformed raw framing sent through the generated client.
	_, err := c.RPC().ModelInfer(ctx, &inference.ModelInferRequest{
		ModelName:        modelName,
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "image", Datatype: "FP32", Shape: []int64{1, 3, 32, 32}}},
		RawInputContents: [][]byte{make([]byte, 10)},
	})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("short raw input: %v, want InvalidArgument", err)
	}
	// Calls the test service does not implement answer Unimplemented.
	if _, err := c.RPC().ModelConfig(ctx, &inference.ModelConfigRequest{Name: modelName}); status.Code(err) != codes.Unimplemented {
		t.Errorf("ModelConfig: %v, want Unimplemented", err)
	}
}

func TestDialUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := api.Dial(ctx, addr); !errors.Is(err, api.ErrUnavailable) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("Dial of a closed port: %v, want ErrUnavailable", err)
	}
	// A context that ends first is reported too.
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := api.Dial(done, addr); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("Dial with a done context: %v, want ErrUnavailable", err)
	}
}

func TestClientOptionsAndMetadata(t *testing.T) {
	addr, m := startServer(t)
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	img := map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)}

	if _, err := c.Infer(ctx, modelName, img, api.WithVersion("1"), api.WithID("a"), api.WithOutputs("probabilities")); err != nil {
		t.Errorf("Infer with version 1: %v", err)
	}
	if _, err := c.Infer(ctx, modelName, img, api.WithVersion("2")); status.Code(err) != codes.NotFound {
		t.Errorf("Infer with version 2: %v, want NotFound", err)
	}
	if _, err := c.Infer(ctx, modelName, img, api.WithOutputs("nope")); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Infer of an unknown output: %v, want InvalidArgument", err)
	}

	sm, err := c.ServerMetadata(ctx)
	if err != nil || sm.GetName() != "kiln-test" {
		t.Errorf("ServerMetadata = %v, %v", sm, err)
	}
	md, err := c.ModelMetadata(ctx, modelName, "")
	if err != nil {
		t.Fatal(err)
	}
	in := m.Inputs()[0]
	if len(md.Inputs) != 1 || md.Inputs[0].Name != in.Name || md.Inputs[0].Datatype != "FP32" || !slices.Equal(md.Inputs[0].Shape, api.WireShape(in.Shape)) {
		t.Errorf("ModelMetadata inputs = %v, want %+v", md.Inputs, in)
	}
	if _, err := c.ModelMetadata(ctx, "nope", ""); status.Code(err) != codes.NotFound {
		t.Errorf("ModelMetadata of an unknown model: %v, want NotFound", err)
	}
}

func TestStream(t *testing.T) {
	addr, m := startServer(t)
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.Stream(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	inputs := make([]*tensor.Tensor, n)
	for i := range n {
		inputs[i] = examples.TinyCNNInput(i + 1)
		if i == 2 { // a bad request in the middle fails alone
			inputs[i] = tensor.New(tensor.Float32, 1, 3, 5, 5, 5)
		}
		if err := s.Send(map[string]*tensor.Tensor{"image": inputs[i]}, api.WithID(string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id, out, err := s.Recv()
		if id != string(rune('a'+i)) {
			t.Errorf("answer %d has id %q", i, id)
		}
		if i == 2 {
			if !errors.Is(err, api.ErrStream) {
				t.Errorf("bad request: %v, want ErrStream", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		want, err := m.Run(ctx, map[string]*tensor.Tensor{"image": inputs[i]})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out["probabilities"].Data, want["probabilities"].Data) {
			t.Errorf("answer %d differs from a direct run", i)
		}
	}
	if _, _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last answer: %v, want io.EOF", err)
	}
}
