package grpcapi

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/tap"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve"
)

// ServedStats is the server option that reports each inference request's
// whole time to the server's Served, for kiln_request_duration_us: a
// ModelInfer call from its arrival (the RPC's headers, so that a client
// slow to send its message is counted) to its response (built and handed
// to grpc-go, which marshals and writes it), and each request of a
// ModelStreamInfer stream from its message's arrival to its answer's
// sending. The other methods are not measured.
//
// It is a tap handle that notes the arrival time of the two inference
// methods in the RPC's context, which the Service reads: not a stats
// handler, whose events grpc-go would build for every RPC (about 20
// allocations and 1.3 KB a ModelInfer call; InFlightOption is one, not
// installed by kiln serve). The server must have only this tap handle.
//
// The Service reports to its own server: s is not used (callers pass the
// server they register the Service for).
func ServedStats(s *serve.Server) grpc.ServerOption {
	return grpc.InTapHandle(tapArrival)
}

// arrivedKey is the context key of an inference RPC's *arrivedCtx.
type arrivedKey struct{}

// arrivedCtx is an inference RPC's context with the time its headers came
// (one allocation, where context.WithValue would take two).
type arrivedCtx struct {
	context.Context
	at time.Time
}

func (c *arrivedCtx) Value(key any) any {
	if key == (arrivedKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func tapArrival(ctx context.Context, info *tap.Info) (context.Context, error) {
	switch info.FullMethodName {
	case inference.GRPCInferenceService_ModelInfer_FullMethodName, inference.GRPCInferenceService_ModelStreamInfer_FullMethodName:
		return &arrivedCtx{ctx, time.Now()}, nil
	}
	return ctx, nil
}

// arrival returns when ctx's RPC arrived, and false where ServedStats is
// not installed.
func arrival(ctx context.Context) (time.Time, bool) {
	a, ok := ctx.Value(arrivedKey{}).(*arrivedCtx)
	if !ok {
		return time.Time{}, false
	}
	return a.at, true
}
