package grpcapi

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/device/cpu"
)

// InFlightOption is the server option that counts each ModelInfer call as
// a request in flight for the CPU engine's thread pool (device/cpu's
// RequestStarted and RequestDone) from the moment grpc-go has read its
// headers until its end: the pool splits a layer over the cores only while
// fewer requests than cores are in flight. Counted inside the handler, a
// request was missed while grpc-go read, decoded, encoded and wrote it,
// and the pool split the layers of tiny models that every core was busy
// with (bench/results/grpc-throughput.md).
//
// Not in PathOptions: grpc-go builds its stats events for every RPC once a
// handler is installed (about 20 allocations and 1.2 KB a ModelInfer
// call), which on 2 busy cores cost more CPU per request than the
// earlier count saved (bench/results/grpc-throughput.md, 2026-12-06).
//
// It is a stats.Handler: grpc-go sends it a *stats.Begin and a *stats.End
// for every RPC that reaches its method, in pairs, also when the request
// fails to decode or the client cancels it. Only ModelInfer is counted;
// ModelStreamInfer counts each request of a stream while it runs (a
// stream's RPC lasts as long as its client keeps it open), and the other
// methods run no model.
func InFlightOption() grpc.ServerOption {
	inFlightMade.Store(true)
	return grpc.StatsHandler(inFlightHandler{})
}

// inFlightMade reports whether InFlightOption was called in this process:
// until it is, no context is counted, and counted need not look (a look-up
// of a key a context does not hold walks all of grpc-go's context chain).
var inFlightMade atomic.Bool

type inFlightHandler struct{}

// countedKey marks the context of an RPC the handler counts.
type countedKey struct{}

// countedCtx is the context of a counted RPC.
type countedCtx struct{ context.Context }

func (c countedCtx) Value(key any) any {
	if key == (countedKey{}) {
		return true
	}
	return c.Context.Value(key)
}

// counted reports whether InFlightOption counts ctx's RPC.
func counted(ctx context.Context) bool {
	if !inFlightMade.Load() {
		return false
	}
	b, _ := ctx.Value(countedKey{}).(bool)
	return b
}

func (inFlightHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if info.FullMethodName == inference.GRPCInferenceService_ModelInfer_FullMethodName {
		return countedCtx{ctx}
	}
	return ctx
}

func (inFlightHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.Begin:
		if _, ok := ctx.(countedCtx); ok || counted(ctx) {
			cpu.RequestStarted()
		}
	case *stats.End:
		if _, ok := ctx.(countedCtx); ok || counted(ctx) {
			cpu.RequestDone()
		}
	}
}

func (inFlightHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (inFlightHandler) HandleConn(context.Context, stats.ConnStats) {}
