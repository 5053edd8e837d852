package grpcapi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// gated holds every run until the gate opens.
type gated struct {
	r       scheduler.Runner
	gate    chan struct{}
	started chan struct{}
}

func (g *gated) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	g.started <- struct{}{}
	<-g.gate
	return g.r.Run(ctx, in)
}

// TestQueueOverGRPC: with the only instance busy and a queue of one, a
// request past its deadline, a cancelled request and a cancelled stream
// leave the queue at once, and a request to a full queue gets
// RESOURCE_EXHAUSTED; the first request still succeeds.
func TestQueueOverGRPC(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tiny", "1"), 0o755)
	os.WriteFile(filepath.Join(dir, "tiny", "1", "model.onnx"), examples.TinyCNNModel, 0o644)
	os.WriteFile(filepath.Join(dir, "tiny", "config.pbtxt"), []byte(`max_batch_size: 1
dynamic_batching { default_queue_policy { max_queue_size: 1 } }`), 0o644)
	g := &gated{gate: make(chan struct{}), started: make(chan struct{}, 10)}
	s := serve.New(serve.Options{Repository: dir, WrapRunner: func(_ string, r scheduler.Runner) scheduler.Runner { g.r = r; return g }})
	if err := s.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	Register(gs, s, false)
	go gs.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	open := func() { once.Do(func() { close(g.gate) }) }
	defer func() { open(); cc.Close(); gs.Stop(); s.Shutdown(context.Background()) }()
	c := inference.NewGRPCInferenceServiceClient(cc)
	req, err := api.NewInferRequest("tiny", map[string]*tensor.Tensor{"image": examples.TinyCNNInput(1)})
	if err != nil {
		t.Fatal(err)
	}
	pending := func() int { return s.Pending()[[2]string{"tiny", "1"}] }
	waitPending := func(n int, what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for pending() != n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d requests queued, want %d", what, pending(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	infer := func(ctx context.Context, errc chan<- error) {
		_, err := c.ModelInfer(ctx, req)
		errc <- err
	}

	first := make(chan error, 1)
	go infer(context.Background(), first) // occupies the instance
	<-g.started

	dctx, dcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer dcancel()
	if _, err := c.ModelInfer(dctx, req); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("past its deadline: %v", err)
	}
	waitPending(0, "after the deadline")

	cctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go infer(cctx, queued)
	waitPending(1, "a queued request")
	if _, err := c.ModelInfer(context.Background(), req); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("full queue: %v, want RESOURCE_EXHAUSTED", err)
	}
	cancel()
	if err := <-queued; status.Code(err) != codes.Canceled {
		t.Errorf("cancelled request: %v", err)
	}
	waitPending(0, "after the cancel")

	sctx, scancel := context.WithCancel(context.Background())
	st, err := c.ModelStreamInfer(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	waitPending(1, "a streamed request")
	scancel()
	waitPending(0, "after the stream was cancelled")

	open()
	if err := <-first; err != nil {
		t.Errorf("first request: %v", err)
	}
}
