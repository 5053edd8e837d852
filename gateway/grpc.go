package gateway

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/internal/version"
)

// rawMsg is a gRPC message kept as its wire bytes: the gateway forwards
// messages without decoding their tensors, and without copying them: a
// message received holds a reference to grpc-go's receive buffers, which
// it sends on as they are (see rawCodec), until free.
type rawMsg struct {
	data mem.BufferSlice // the received buffers (a reference of ours), nil once replaced by b
	b    []byte          // the message's bytes in one slice, when made (see bytes)
}

// bytes returns the message's wire bytes in one slice: the receive buffer
// itself when the message came in one (the usual case for messages up to
// a frame), else a copy.
func (m *rawMsg) bytes() []byte {
	if m.b == nil && len(m.data) > 0 {
		if len(m.data) == 1 {
			m.b = m.data[0].ReadOnlyData()
		} else {
			m.b = m.data.Materialize()
		}
	}
	return m.b
}

// set replaces the message's bytes with b (owned by the message from now on).
func (m *rawMsg) set(b []byte) {
	m.free()
	m.b = b
}

// free releases the receive buffers; the message is empty after.
func (m *rawMsg) free() {
	m.data.Free()
	m.data, m.b = nil, nil
}

// rawCodec passes rawMsg through as its buffers and codes other messages
// (the gateway's own answers, grpc.health.v1) as protobuf.
type rawCodec struct{}

var protoCodec = encoding.GetCodecV2("proto")

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return protoCodec.Marshal(v)
	}
	if m.data != nil {
		m.data.Ref() // grpc-go frees its reference once sent; the message keeps its own (for a retry)
		return m.data, nil
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	m.free()
	data.Ref() // grpc-go frees data when Unmarshal returns; the message keeps it until free
	m.data = data
	return nil
}

func (rawCodec) Name() string { return "proto" }

const service = "/inference.GRPCInferenceService/"

// GRPCServerOptions are the options of a grpc.Server that serves the
// gateway's GRPCInferenceService: the server-level RPCs answered from the
// gateway's view, the model RPCs and ModelStreamInfer proxied to a backend.
// Other services (grpc.health.v1) may be registered on the same server.
//
// The RPCs run on a pool of grpc-go's stream workers, one per CPU, rather
// than each on a new goroutine: a new goroutine's stack grows through the
// proxy's calls on every RPC (runtime.newstack, a tenth of the gateway's
// CPU time at 400 requests/s), a worker's has grown once. The HTTP/2 flow
// control windows are fixed (see grpcStreamWindow), both to the clients
// and to the backends.
func (g *Gateway) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(g.grpcHandler),
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.InitialWindowSize(grpcStreamWindow), grpc.InitialConnWindowSize(grpcConnWindow)}
}

// grpcStreamWindow and grpcConnWindow are the gateway's HTTP/2 flow control
// windows, per stream and per connection. Fixed windows turn off grpc-go's
// bandwidth estimation, which pings the peer as data comes in and updates
// the windows in small steps: on a proxy that receives every message
// twice, a third fewer system calls and goroutine wake-ups per unary RPC
// (10.5 instead of 14 to 17 system calls at 400 requests/s), and 50 to 70
// us less added latency at the median (bench/results/gateway-overhead.md).
// A stream may send this much before the gateway reads it.
const (
	grpcStreamWindow = 4 << 20
	grpcConnWindow   = 16 << 20
)

func (g *Gateway) grpcHandler(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	rpc, ok := strings.CutPrefix(method, service)
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown service method %s", method)
	}
	ctx := ss.Context()
	var client Client
	if rpc != "ServerLive" && rpc != "ServerReady" {
		var err error
		if client, err = g.admit.admit(firstMD(ctx, "authorization", g.admit.open()), time.Now()); err != nil {
			return grpcError(g, err)
		}
	}
	switch rpc {
	case "ServerLive":
		return answer(ss, &inference.ServerLiveResponse{Live: true})
	case "ServerReady":
		return answer(ss, &inference.ServerReadyResponse{Ready: g.Ready()})
	case "ServerMetadata":
		return answer(ss, &inference.ServerMetadataResponse{Name: "kiln-gateway", Version: version.Kiln,
			Extensions: []string{"model_repository", "binary_tensor_data", "statistics"}})
	case "RepositoryIndex":
		resp := &inference.RepositoryIndexResponse{}
		for _, e := range g.index() {
			resp.Models = append(resp.Models, &inference.RepositoryIndexResponse_ModelIndex{Name: e["name"], Version: e["version"], State: e["state"]})
		}
		return answer(ss, resp)
	case "ModelInfer", "ModelReady", "ModelMetadata", "ModelConfig", "ModelStatistics":
		if g.draining.Load() {
			return grpcError(g, ErrDraining)
		}
		return g.grpcUnary(ss, method, rpc == "ModelInfer", client.Priority)
	case "ModelStreamInfer":
		if g.draining.Load() {
			return grpcError(g, ErrDraining)
		}
		return g.grpcStream(ss, method, client.Priority)
	}
	return status.Errorf(codes.Unimplemented, "%s is not served by the gateway (call a backend)", rpc)
}

// answer reads the request (unused) and sends resp.
func answer(ss grpc.ServerStream, resp proto.Message) error {
	var in rawMsg
	if err := ss.RecvMsg(&in); err != nil {
		return err
	}
	in.free()
	return ss.SendMsg(resp)
}

// firstMD returns the first value of the incoming metadata key ("" with
// skip, when it would not be used).
func firstMD(ctx context.Context, key string, skip bool) string {
	if skip {
		return ""
	}
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// grpcError turns the gateway's own refusals into gRPC statuses.
func grpcError(g *Gateway, err error) error {
	code, reason := codes.Unavailable, "unavailable"
	switch {
	case errors.Is(err, ErrOverloaded):
		code, reason = codes.ResourceExhausted, "overloaded"
	case errors.Is(err, ErrRateLimited):
		code, reason = codes.ResourceExhausted, "rate_limited"
	case errors.Is(err, ErrUnauthenticated):
		code, reason = codes.Unauthenticated, "unauthenticated"
	case errors.Is(err, ErrDraining):
		reason = "draining"
	case errors.Is(err, ErrNoBackend):
		reason = "no_backend"
	}
	g.metrics.rejected.WithLabelValues(reason).Inc()
	return status.Error(code, err.Error())
}

// wireRoute reads a request's model name (field 1), version (field 2) and,
// for ModelInfer, its sequence_id parameter (field 4, a map entry with key
// "sequence_id") from its wire bytes, skipping everything else.
func wireRoute(b []byte, infer bool) (route, error) {
	var rt route
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return rt, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num <= 2 || infer && num == 4) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return rt, protowire.ParseError(m)
			}
			switch num {
			case 1:
				rt.model = string(v)
			case 2:
				rt.version = string(v)
			case 4:
				switch key, val := mapEntry(v); key {
				case "sequence_id":
					rt.seq = "s" + string(val)
				case "priority":
					rt.prio = true
				case "sequence_end":
					rt.end = string(val) == "\x08\x01" // bool_param (field 1) true
				}
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return rt, protowire.ParseError(m)
		}
		b = b[m:]
	}
	return rt, nil
}

// mapEntry reads a map<string, message> entry's key and value bytes.
func mapEntry(b []byte) (key string, val []byte) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", nil
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return "", nil
		}
		if typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			switch num {
			case 1:
				key = string(v)
			case 2:
				val = v
			}
		}
		b = b[m:]
	}
	return key, val
}

// outgoing is the context of a call to a backend: the client's metadata,
// with the backend token in place of its authorization when set.
func (g *Gateway) outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx) // a copy of its own
	for _, k := range []string{":authority", "content-type", "user-agent", "grpc-timeout", "te"} {
		delete(md, k)
	}
	if g.opts.BackendToken != "" {
		md.Set("authorization", "Bearer "+g.opts.BackendToken)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// grpcOutcome classifies a backend call's error.
func grpcOutcome(err error) (outcome, codes.Code) {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable:
		msg := st.Message()
		if strings.Contains(msg, "connection refused") || strings.Contains(msg, "connection error") ||
			strings.Contains(msg, "dial") || strings.Contains(msg, "no such host") {
			return unreached, st.Code()
		}
		if strings.Contains(msg, "transport") || strings.Contains(msg, "EOF") || strings.Contains(msg, "reset") {
			return lost, st.Code()
		}
		return refused, st.Code()
	case codes.OK:
		return answered, st.Code()
	}
	return answered, st.Code()
}

// grpcCall is what grpcUnary needs of the heap: the request and answer
// messages, the backend's header and trailer and the call options that
// fill them in, kept between calls.
type grpcCall struct {
	in, out         rawMsg
	header, trailer metadata.MD
	opts            [3]grpc.CallOption
}

// rawCodecOption makes a call to a backend pass rawMsg through.
var rawCodecOption = grpc.ForceCodecV2(rawCodec{})

var grpcCalls = sync.Pool{New: func() any {
	c := &grpcCall{}
	c.opts = [3]grpc.CallOption{rawCodecOption, grpc.Header(&c.header), grpc.Trailer(&c.trailer)}
	return c
}}

func (c *grpcCall) release() {
	c.in.free()
	c.out.free()
	c.header, c.trailer = nil, nil
	grpcCalls.Put(c)
}

func (g *Gateway) grpcUnary(ss grpc.ServerStream, method string, infer bool, priority int) error {
	call := grpcCalls.Get().(*grpcCall)
	defer call.release()
	in := &call.in
	if err := ss.RecvMsg(in); err != nil {
		return err
	}
	rt, err := wireRoute(in.bytes(), infer)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "cannot read the request: %v", err)
	}
	if rt.model == "" && !strings.HasSuffix(method, "/ModelStatistics") {
		return status.Error(codes.InvalidArgument, "the request names no model")
	}
	if strings.HasSuffix(method, "/ModelStatistics") {
		ss.SetHeader(metadata.Pairs(strings.ToLower(StatisticsHeader), oneBackend[0]))
	}
	if infer && priority > 0 && !rt.prio {
		in.set(appendPriority(in.bytes(), priority))
	}
	rt.grpc = true
	ctx := ss.Context()
	g.budget.request()
	var triedArr [4]*Backend
	tried := triedArr[:0]
	var lastErr error
	for attempt := 0; attempt < g.opts.MaxAttempts; attempt++ {
		b, err := g.pick(rt, tried)
		if err != nil {
			if lastErr != nil {
				break
			}
			return grpcError(g, err)
		}
		if attempt > 0 && !g.budget.allow() {
			g.metrics.rejected.WithLabelValues("retry_budget").Inc()
			break
		}
		tried = append(tried, b)
		cc, err := g.conn(b)
		if err != nil {
			lastErr = status.Error(codes.Unavailable, err.Error())
			continue
		}
		out := &call.out
		out.free()
		call.header, call.trailer = nil, nil
		start := time.Now()
		b.outstanding.Add(1)
		err = cc.Invoke(g.outgoing(ctx), method, in, out, call.opts[:]...)
		b.outstanding.Add(-1)
		header, trailer := call.header, call.trailer
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		o, code := grpcOutcome(err)
		g.metrics.request(b.Name(), rt.model, code.String())
		if err == nil {
			g.done(b, rt, answered)
			g.metrics.observe(b.Name(), rt.model, time.Since(start))
			ss.SetHeader(header)
			ss.SetTrailer(trailer)
			return ss.SendMsg(out)
		}
		g.done(b, rt, o)
		lastErr = err
		switch {
		case code == codes.ResourceExhausted && rt.seq == "":
			g.metrics.retries.WithLabelValues(b.Name(), rt.model, "full").Inc()
			continue
		case o == answered:
			ss.SetTrailer(trailer)
			return err // the backend's answer
		case o == lost && (g.opts.NoRetryLost || rt.seq != ""), o == refused && rt.seq != "":
			return err
		}
		g.metrics.retries.WithLabelValues(b.Name(), rt.model, reasonOf(o)).Inc()
	}
	if lastErr == nil {
		lastErr = status.Error(codes.Unavailable, ErrNoBackend.Error())
	}
	if status.Code(lastErr) == codes.ResourceExhausted {
		// every backend tried had its queue full: shed, as over HTTP
		g.metrics.rejected.WithLabelValues("overloaded").Inc()
	}
	return lastErr
}

// grpcStream proxies ModelStreamInfer: the stream goes to the backend
// picked for its first message's model (another one if the stream cannot
// be opened there), and messages are copied both ways.
func (g *Gateway) grpcStream(ss grpc.ServerStream, method string, priority int) error {
	first := &rawMsg{}
	if err := ss.RecvMsg(first); err != nil {
		if err == io.EOF {
			return nil
		}
		return err
	}
	rt, err := wireRoute(first.bytes(), true)
	if err != nil {
		first.free()
		return status.Errorf(codes.InvalidArgument, "cannot read the request: %v", err)
	}
	rt.grpc = true
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	var tried []*Backend
	var cs grpc.ClientStream
	var b *Backend
	for attempt := 0; attempt < g.opts.MaxAttempts && cs == nil; attempt++ {
		if b, err = g.pick(rt, tried); err != nil {
			return grpcError(g, err)
		}
		tried = append(tried, b)
		cc, cerr := g.conn(b)
		if cerr != nil {
			err = cerr
			continue
		}
		cs, err = cc.NewStream(g.outgoing(ctx), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			o, _ := grpcOutcome(err)
			g.done(b, rt, o)
			cs = nil
		}
	}
	if cs == nil {
		first.free()
		return status.Errorf(codes.Unavailable, "no backend took the stream: %v", err)
	}
	b.outstanding.Add(1)
	defer b.outstanding.Add(-1)
	g.metrics.requests.WithLabelValues(b.Name(), rt.model, "stream").Inc()
	sendErr := make(chan error, 1)
	go func() {
		msg := first
		for {
			if priority > 0 {
				if r, err := wireRoute(msg.bytes(), true); err == nil && !r.prio {
					msg.set(appendPriority(msg.bytes(), priority))
				}
			}
			err := cs.SendMsg(msg)
			msg.free()
			if err != nil {
				sendErr <- err
				return
			}
			if err := ss.RecvMsg(msg); err != nil {
				cs.CloseSend()
				if err == io.EOF {
					err = nil
				}
				sendErr <- err
				return
			}
		}
	}()
	if h, err := cs.Header(); err == nil {
		ss.SendHeader(h)
	}
	for {
		var out rawMsg
		if err := cs.RecvMsg(&out); err != nil {
			ss.SetTrailer(cs.Trailer())
			if err == io.EOF {
				return nil
			}
			return err
		}
		err := ss.SendMsg(&out)
		out.free()
		if err != nil {
			return err
		}
	}
}
