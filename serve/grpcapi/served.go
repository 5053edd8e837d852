package grpcapi

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/serve"
)

// ServedStats is the server option that reports each inference request's
// whole time to s.Served, for kiln_request_duration_us: a ModelInfer call
// from its arrival (the RPC's headers) to its end (the response and
// trailers written), and each request of a ModelStreamInfer stream from
// its message's arrival to its answer's sending (a stream answers in
// order). The other methods are not measured.
func ServedStats(s *serve.Server) grpc.ServerOption {
	return grpc.StatsHandler(servedStats{s})
}

type servedStats struct{ s *serve.Server }

// rpcServed is the state of one measured RPC.
type rpcServed struct {
	stream bool
	begin  time.Time
	// model is a ModelInfer call's model; arrivals are a stream's
	// requests not yet answered, oldest first.
	mu       sync.Mutex
	model    string
	arrivals []arrival
}

type arrival struct {
	model string
	at    time.Time
}

type servedKey struct{}

func (h servedStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	switch info.FullMethodName {
	case inference.GRPCInferenceService_ModelInfer_FullMethodName:
		return context.WithValue(ctx, servedKey{}, &rpcServed{})
	case inference.GRPCInferenceService_ModelStreamInfer_FullMethodName:
		return context.WithValue(ctx, servedKey{}, &rpcServed{stream: true})
	}
	return ctx
}

func (h servedStats) HandleRPC(ctx context.Context, st stats.RPCStats) {
	r, ok := ctx.Value(servedKey{}).(*rpcServed)
	if !ok || st.IsClient() {
		return
	}
	switch e := st.(type) {
	case *stats.Begin:
		r.begin = e.BeginTime
	case *stats.InPayload:
		req, ok := e.Payload.(*inference.ModelInferRequest)
		if !ok {
			return
		}
		r.mu.Lock()
		if r.stream {
			r.arrivals = append(r.arrivals, arrival{req.GetModelName(), e.RecvTime})
		} else {
			r.model = req.GetModelName()
		}
		r.mu.Unlock()
	case *stats.OutPayload:
		if !r.stream {
			return
		}
		r.mu.Lock()
		if len(r.arrivals) == 0 {
			r.mu.Unlock()
			return
		}
		a := r.arrivals[0]
		r.arrivals = r.arrivals[1:]
		r.mu.Unlock()
		h.s.Served(a.model, a.at)
	case *stats.End:
		r.mu.Lock()
		model := r.model
		r.mu.Unlock()
		if !r.stream && model != "" {
			h.s.Served(model, r.begin)
		}
	}
}

func (h servedStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (h servedStats) HandleConn(context.Context, stats.ConnStats) {}
