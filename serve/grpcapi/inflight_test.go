package grpcapi

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/tensor"
)

// heldRunner holds every run until release receives or the run's context
// ends.
type heldRunner struct {
	r       scheduler.Runner
	started chan struct{}
	release chan struct{}
}

func (h *heldRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	h.started <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.r.Run(ctx, in)
}

// TestInFlightCount: with kiln serve's gRPC options, with InFlightOption
// and without (the Service then counts in ModelInfer), a ModelInfer call
// counts as a request in flight for the CPU pool while the model runs
// (device/cpu's RequestsInFlight), and the count falls back to where it
// was after a success, a message that fails to decode, a client's cancel,
// and a health or metadata call, which are not counted at all.
func TestInFlightCount(t *testing.T) {
	for _, withOption := range []bool{true, false} {
		t.Run(map[bool]string{true: "InFlightOption", false: "counted by the handler"}[withOption], func(t *testing.T) {
			inFlightCount(t, withOption)
		})
	}
}

func inFlightCount(t *testing.T, withOption bool) {
	h := &heldRunner{started: make(chan struct{}, 4), release: make(chan struct{}, 4)}
	s := pathServe(t, pathOptions{wrap: func(_ string, r scheduler.Runner) scheduler.Runner { h.r = r; return h }})
	opts := append(append(DecodeErrorOptions(), ServedStats(s)), PathOptions()...)
	if withOption {
		opts = append(opts, InFlightOption())
	}
	g := grpc.NewServer(opts...)
	Register(g, s, false)
	c := dial(t, g)
	cc, err := grpc.NewClient(addrs[c], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	req := tinyRequest(t)
	base := cpu.RequestsInFlight()
	waitCount := func(want int, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for cpu.RequestsInFlight() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d requests in flight, want %d", what, cpu.RequestsInFlight(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, tt := range []struct {
		name string
		// cancel the call while the model runs (else let it finish)
		cancel bool
		want   codes.Code
	}{
		{"success", false, codes.OK},
		{"client cancel", true, codes.Canceled},
	} {
		cctx, ccancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := c.ModelInfer(cctx, req)
			done <- err
		}()
		select {
		case <-h.started:
		case <-ctx.Done():
			t.Fatalf("%s: the model never ran", tt.name)
		}
		if n := cpu.RequestsInFlight(); n != base+1 {
			t.Errorf("%s: %d requests in flight while the model runs, want %d", tt.name, n, base+1)
		}
		// health and metadata calls meanwhile are not requests that run a model
		if _, err := c.ServerLive(ctx, &inference.ServerLiveRequest{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: "tinycnn"}); err != nil {
			t.Fatal(err)
		}
		if n := cpu.RequestsInFlight(); n != base+1 {
			t.Errorf("%s: %d requests in flight after metadata calls, want %d", tt.name, n, base+1)
		}
		if tt.cancel {
			ccancel()
		} else {
			h.release <- struct{}{}
		}
		if err := <-done; status.Code(err) != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		ccancel()
		waitCount(base, tt.name)
	}

	// messages that fail to decode never reach the Service
	for _, msg := range [][]byte{{0x0f}, {0x0a, 0x02, 0xff, 0xfe}} {
		var out []byte
		err := cc.Invoke(ctx, inference.GRPCInferenceService_ModelInfer_FullMethodName, msg, &out, grpc.ForceCodecV2(rawCodec{}))
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("undecodable message % x: %v, want INVALID_ARGUMENT", msg, err)
		}
		waitCount(base, "after a message that fails to decode")
	}

	// a stream counts each request while it runs, not the stream
	st, err := c.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	<-h.started
	if n := cpu.RequestsInFlight(); n != base+1 {
		t.Errorf("stream: %d requests in flight while the model runs, want %d", n, base+1)
	}
	h.release <- struct{}{}
	if r, err := st.Recv(); err != nil || r.GetErrorMessage() != "" {
		t.Fatalf("stream: %v %q", err, r.GetErrorMessage())
	}
	waitCount(base, "an open stream after its answer")
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	st.Recv()
	waitCount(base, "after the stream")
}

type benchCtxKey int

// BenchmarkCounted: ModelInfer's look-up of InFlightOption's mark in a
// context chain of 10 values (grpc-go's stream context holds several),
// with InFlightOption made in the process (a walk of the chain) and
// without (none).
func BenchmarkCounted(b *testing.B) {
	ctx := context.Background()
	for i := range 10 {
		ctx = context.WithValue(ctx, benchCtxKey(i), i)
	}
	for _, made := range []bool{true, false} {
		name := "option-made"
		if !made {
			name = "no-option"
		}
		b.Run(name, func(b *testing.B) {
			was := inFlightMade.Load()
			inFlightMade.Store(made)
			defer inFlightMade.Store(was)
			for range b.N {
				if counted(ctx) {
					b.Fatal("counted")
				}
			}
		})
	}
}
