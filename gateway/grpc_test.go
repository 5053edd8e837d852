package gateway

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api/inference"
)

// fakeGRPC is a GRPCInferenceService backend that answers with its name.
type fakeGRPC struct {
	inference.UnimplementedGRPCInferenceServiceServer
	name   string
	code   atomic.Int32 // an error code to answer ModelInfer with (0: none)
	infers atomic.Int64
	auth   atomic.Value
	prio   atomic.Int64 // the last request's priority parameter
}

func (f *fakeGRPC) ModelInfer(ctx context.Context, r *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	f.infers.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	f.auth.Store(strings.Join(md.Get("authorization"), ","))
	f.prio.Store(r.Parameters["priority"].GetInt64Param())
	if c := codes.Code(f.code.Load()); c != codes.OK {
		return nil, status.Error(c, "fake refusal")
	}
	return &inference.ModelInferResponse{ModelName: r.ModelName, Id: f.name + "/" + r.Id, RawOutputContents: r.RawInputContents}, nil
}

func (f *fakeGRPC) ModelReady(ctx context.Context, r *inference.ModelReadyRequest) (*inference.ModelReadyResponse, error) {
	return &inference.ModelReadyResponse{Ready: true}, nil
}

func (f *fakeGRPC) ModelStreamInfer(s inference.GRPCInferenceService_ModelStreamInferServer) error {
	for {
		r, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		s.Send(&inference.ModelStreamInferResponse{InferResponse: &inference.ModelInferResponse{ModelName: r.ModelName, Id: f.name + "/" + r.Id}})
	}
}

// startGRPCBackends starts fakes with a gRPC server each, and a gateway
// (HTTP polls, gRPC proxy) over them; it returns a client of the gateway.
func startGRPCBackends(t *testing.T, opts Options, names ...string) (*Gateway, []*fakeGRPC, inference.GRPCInferenceServiceClient) {
	t.Helper()
	var eps []Endpoint
	var fs []*fakeGRPC
	for _, n := range names {
		h := newFake(t, n, "m")
		fg := &fakeGRPC{name: n}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		inference.RegisterGRPCInferenceServiceServer(s, fg)
		go s.Serve(l)
		t.Cleanup(s.Stop)
		eps = append(eps, Endpoint{HTTP: h.addr(), GRPC: l.Addr().String()})
		fs = append(fs, fg)
	}
	opts.PollInterval, opts.SlowStart = 20*time.Millisecond, -1
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	g.SetEndpoints(eps)
	for deadline := time.Now().Add(10 * time.Second); !g.Ready() || len(g.index()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(g.GRPCServerOptions()...)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return g, fs, inference.NewGRPCInferenceServiceClient(cc)
}

// TestGatewayGRPC: unary inference and metadata RPCs go to a backend with
// the model, their bytes untouched; UNAVAILABLE is retried elsewhere;
// server-level RPCs are the gateway's; the stream is proxied.
func TestGatewayGRPC(t *testing.T) {
	_, fs, c := startGRPCBackends(t, Options{Policy: "roundrobin", BackendToken: "inner"}, "a", "b")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer outer")
	raw := []byte{1, 2, 3, 250}
	seen := map[string]bool{}
	for range 10 {
		resp, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "m", Id: "r", RawInputContents: [][]byte{raw}})
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.RawOutputContents[0]) != string(raw) || resp.ModelName != "m" {
			t.Fatalf("answer %v", resp)
		}
		seen[resp.Id] = true
	}
	if !seen["a/r"] || !seen["b/r"] {
		t.Errorf("answers from %v, want both backends", seen)
	}
	if got := fs[0].auth.Load(); got != "Bearer inner" {
		t.Errorf("backend got authorization %q", got)
	}
	fs[0].code.Store(int32(codes.Unavailable))
	for range 6 {
		resp, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "m", Id: "r"})
		if err != nil || resp.Id != "b/r" {
			t.Fatalf("with a refusing: %v, %v", resp, err)
		}
	}
	fs[0].code.Store(int32(codes.InvalidArgument))
	fs[1].code.Store(int32(codes.InvalidArgument))
	if _, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "m"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a backend's INVALID_ARGUMENT: %v", err)
	}
	if _, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "other"}); status.Code(err) != codes.Unavailable {
		t.Errorf("a model on no backend: %v, want UNAVAILABLE", err)
	}
	if r, err := c.ModelReady(ctx, &inference.ModelReadyRequest{Name: "m"}); err != nil || !r.Ready {
		t.Errorf("ModelReady: %v %v", r, err)
	}
	if r, err := c.ServerReady(ctx, &inference.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Errorf("ServerReady: %v %v", r, err)
	}
	if r, err := c.ServerMetadata(ctx, &inference.ServerMetadataRequest{}); err != nil || r.Name != "kiln-gateway" {
		t.Errorf("ServerMetadata: %v %v", r, err)
	}
	if r, err := c.RepositoryIndex(ctx, &inference.RepositoryIndexRequest{}); err != nil || len(r.Models) != 1 || r.Models[0].Name != "m" {
		t.Errorf("RepositoryIndex: %v %v", r, err)
	}
	if _, err := c.RepositoryModelUnload(ctx, &inference.RepositoryModelUnloadRequest{ModelName: "m"}); status.Code(err) != codes.Unimplemented {
		t.Errorf("unload through the gateway: %v", err)
	}

	st, err := c.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := st.Send(&inference.ModelInferRequest{ModelName: "m", Id: string(rune('0' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	st.CloseSend()
	var ids []string
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.InferResponse.Id)
	}
	if len(ids) != 5 || ids[0][1:] != "/0" || ids[4][1:] != "/4" || ids[0][:1] != ids[4][:1] {
		t.Errorf("stream answers %q: want 5, in order, from one backend", ids)
	}
}

// TestGatewayGRPCAdmission: client tokens over gRPC.
func TestGatewayGRPCAdmission(t *testing.T) {
	_, fs, c := startGRPCBackends(t, Options{Clients: []Client{{Name: "a", Token: "tok"}, {Name: "batch", Token: "low", Priority: 2}}}, "a")
	if _, err := c.ModelInfer(context.Background(), &inference.ModelInferRequest{ModelName: "m"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer tok")
	if _, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "m"}); err != nil {
		t.Errorf("with the token: %v", err)
	}
	if fs[0].prio.Load() != 0 {
		t.Errorf("a client without a priority level: the backend got priority %d", fs[0].prio.Load())
	}
	low := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer low")
	if _, err := c.ModelInfer(low, &inference.ModelInferRequest{ModelName: "m"}); err != nil || fs[0].prio.Load() != 2 {
		t.Errorf("the batch client's request: %v, priority %d at the backend, want 2", err, fs[0].prio.Load())
	}
	own := &inference.ModelInferRequest{ModelName: "m", Parameters: map[string]*inference.InferParameter{
		"priority": {ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: 1}}}}
	if _, err := c.ModelInfer(low, own); err != nil || fs[0].prio.Load() != 1 {
		t.Errorf("a request with its own priority: %v, priority %d at the backend, want 1", err, fs[0].prio.Load())
	}
	if r, err := c.ServerLive(context.Background(), &inference.ServerLiveRequest{}); err != nil || !r.Live {
		t.Errorf("ServerLive needs no token: %v %v", r, err)
	}
}

// TestGatewayGRPCShedding: over gRPC, a client over its rate, every
// eligible backend at the gateway's queue capacity, and every backend
// answering RESOURCE_EXHAUSTED (its own queue full) are RESOURCE_EXHAUSTED;
// the first two without sending anything.
func TestGatewayGRPCShedding(t *testing.T) {
	req := &inference.ModelInferRequest{ModelName: "m"}
	bearer := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}

	_, fs, c := startGRPCBackends(t, Options{Clients: []Client{{Name: "slow", Token: "s", Rate: 0.001, Burst: 1}}}, "a")
	if _, err := c.ModelInfer(bearer("s"), req); err != nil {
		t.Fatalf("within the rate: %v", err)
	}
	if _, err := c.ModelInfer(bearer("s"), req); status.Code(err) != codes.ResourceExhausted || fs[0].infers.Load() != 1 {
		t.Errorf("over the rate: %v, the backend got %d requests, want RESOURCE_EXHAUSTED and 1", err, fs[0].infers.Load())
	}

	g, fs, c := startGRPCBackends(t, Options{MaxQueue: 2}, "a", "b")
	g.mu.RLock()
	for _, be := range g.backends {
		be.outstanding.Store(2)
	}
	g.mu.RUnlock()
	if _, err := c.ModelInfer(context.Background(), req); status.Code(err) != codes.ResourceExhausted || fs[0].infers.Load()+fs[1].infers.Load() != 0 {
		t.Errorf("every backend at capacity: %v, backends got %d and %d, want RESOURCE_EXHAUSTED and none", err, fs[0].infers.Load(), fs[1].infers.Load())
	}
	g.mu.RLock()
	for _, be := range g.backends {
		be.outstanding.Store(0)
	}
	g.mu.RUnlock()
	fs[0].code.Store(int32(codes.ResourceExhausted))
	fs[1].code.Store(int32(codes.ResourceExhausted))
	if _, err := c.ModelInfer(context.Background(), req); status.Code(err) != codes.ResourceExhausted || fs[0].infers.Load() != 1 || fs[1].infers.Load() != 1 {
		t.Errorf("every backend's queue full: %v, backends got %d and %d, want RESOURCE_EXHAUSTED after one try each", err, fs[0].infers.Load(), fs[1].infers.Load())
	}
	fs[1].code.Store(0)
	if _, err := c.ModelInfer(context.Background(), req); err != nil {
		t.Errorf("one backend with room: %v", err)
	}
	m := scrape(t, g)
	// shed by the gateway's count, and after every backend's own refusal
	if m[`kiln_gateway_rejected_total{reason="overloaded"}`] != 2 {
		t.Errorf("rejected overloaded: %v, want 2", m[`kiln_gateway_rejected_total{reason="overloaded"}`])
	}
}
