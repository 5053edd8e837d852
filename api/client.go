package api

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrUnavailable is returned by Dial when the server cannot be reached.
var ErrUnavailable = errors.New("api: server unavailable")

// DefaultMaxRecvMsgSize is the largest response, in bytes, a Client accepts
// unless a grpc.WithDefaultCallOptions option says otherwise.
const DefaultMaxRecvMsgSize = 256 << 20

// Client is a KServe v2 gRPC client that speaks in tensors. It is safe for
// concurrent use.
type Client struct {
	conn *grpc.ClientConn
	rpc  inference.GRPCInferenceServiceClient
}

// Dial connects to the inference server at addr ("host:port") and waits
// until the connection is ready, the connection attempt fails, or ctx ends.
// Without options the connection is plaintext; opts are applied after kiln's
// defaults, so grpc.WithTransportCredentials in opts selects TLS.
func Dial(ctx context.Context, addr string, opts ...grpc.DialOption) (*Client, error) {
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(DefaultMaxRecvMsgSize)),
	}, opts...)
	conn, err := grpc.NewClient(addr, all...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, addr, err)
	}
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			break
		}
		if s == connectivity.TransientFailure || s == connectivity.Shutdown {
			conn.Close()
			return nil, fmt.Errorf("%w: %s: connection %v", ErrUnavailable, addr, s)
		}
		if !conn.WaitForStateChange(ctx, s) {
			conn.Close()
			return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, addr, ctx.Err())
		}
	}
	return &Client{conn: conn, rpc: inference.NewGRPCInferenceServiceClient(conn)}, nil
}

// NewClient wraps an existing connection; closing the Client closes conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{conn: conn, rpc: inference.NewGRPCInferenceServiceClient(conn)}
}

// RPC returns the generated client, for the calls Client does not wrap.
func (c *Client) RPC() inference.GRPCInferenceServiceClient { return c.rpc }

// Conn returns the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// ServerLive reports whether the server is live. Errors carry the gRPC
// status (status.FromError finds it).
func (c *Client) ServerLive(ctx context.Context) (bool, error) {
	r, err := c.rpc.ServerLive(ctx, &inference.ServerLiveRequest{})
	if err != nil {
		return false, fmt.Errorf("api: ServerLive: %w", err)
	}
	return r.GetLive(), nil
}

// ServerReady reports whether the server is ready for inference.
func (c *Client) ServerReady(ctx context.Context) (bool, error) {
	r, err := c.rpc.ServerReady(ctx, &inference.ServerReadyRequest{})
	if err != nil {
		return false, fmt.Errorf("api: ServerReady: %w", err)
	}
	return r.GetReady(), nil
}

// ModelReady reports whether model is ready; an empty version lets the
// server choose.
func (c *Client) ModelReady(ctx context.Context, model, version string) (bool, error) {
	r, err := c.rpc.ModelReady(ctx, &inference.ModelReadyRequest{Name: model, Version: version})
	if err != nil {
		return false, fmt.Errorf("api: ModelReady %s: %w", model, err)
	}
	return r.GetReady(), nil
}

// InferOption adjusts the request Infer sends.
type InferOption func(*inference.ModelInferRequest)

// WithVersion asks for one version of the model instead of the server's
// choice.
func WithVersion(version string) InferOption {
	return func(r *inference.ModelInferRequest) { r.ModelVersion = version }
}

// WithID sets the request id, which the server echoes in its response.
func WithID(id string) InferOption {
	return func(r *inference.ModelInferRequest) { r.Id = id }
}

// WithOutputs asks for only the named outputs instead of all of them.
func WithOutputs(names ...string) InferOption {
	return func(r *inference.ModelInferRequest) {
		for _, n := range names {
			r.Outputs = append(r.Outputs, &inference.ModelInferRequest_InferRequestedOutputTensor{Name: n})
		}
	}
}

// WithParameter sets a request parameter; value must be a bool, int64,
// string, float64 or uint64, and any other type is ignored.
func WithParameter(name string, value any) InferOption {
	return func(r *inference.ModelInferRequest) {
		p := &inference.InferParameter{}
		switch v := value.(type) {
		case bool:
			p.ParameterChoice = &inference.InferParameter_BoolParam{BoolParam: v}
		case int64:
			p.ParameterChoice = &inference.InferParameter_Int64Param{Int64Param: v}
		case string:
			p.ParameterChoice = &inference.InferParameter_StringParam{StringParam: v}
		case float64:
			p.ParameterChoice = &inference.InferParameter_DoubleParam{DoubleParam: v}
		case uint64:
			p.ParameterChoice = &inference.InferParameter_Uint64Param{Uint64Param: v}
		default:
			return
		}
		if r.Parameters == nil {
			r.Parameters = map[string]*inference.InferParameter{}
		}
		r.Parameters[name] = p
	}
}

// Infer runs model on inputs (sent as raw contents) and returns every output
// the server answers with, by name.
func (c *Client) Infer(ctx context.Context, model string, inputs map[string]*tensor.Tensor, opts ...InferOption) (map[string]*tensor.Tensor, error) {
	req, err := NewInferRequest(model, inputs)
	if err != nil {
		return nil, fmt.Errorf("api: infer %s: %w", model, err)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := c.rpc.ModelInfer(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("api: infer %s: %w", model, err)
	}
	out, err := ResponseTensors(resp)
	if err != nil {
		return nil, fmt.Errorf("api: infer %s: response: %w", model, err)
	}
	return out, nil
}

// ServerMetadata returns the server's name, version and extensions.
func (c *Client) ServerMetadata(ctx context.Context) (*inference.ServerMetadataResponse, error) {
	r, err := c.rpc.ServerMetadata(ctx, &inference.ServerMetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("api: ServerMetadata: %w", err)
	}
	return r, nil
}

// ModelMetadata returns a model's versions, platform, inputs and outputs; an
// empty version lets the server choose.
func (c *Client) ModelMetadata(ctx context.Context, model, version string) (*inference.ModelMetadataResponse, error) {
	r, err := c.rpc.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: model, Version: version})
	if err != nil {
		return nil, fmt.Errorf("api: ModelMetadata %s: %w", model, err)
	}
	return r, nil
}

// Stream is one ModelStreamInfer call: requests sent with Send are answered,
// in the server's order, by Recv. One goroutine may Send while another
// Recvs.
type Stream struct {
	model string
	s     grpc.BidiStreamingClient[inference.ModelInferRequest, inference.ModelStreamInferResponse]
}

// ErrStream wraps an error the server reported for one request of a stream;
// the stream itself goes on.
var ErrStream = errors.New("api: stream request failed")

// Stream opens a ModelStreamInfer stream for model; cancel ctx to abandon
// it.
func (c *Client) Stream(ctx context.Context, model string) (*Stream, error) {
	s, err := c.rpc.ModelStreamInfer(ctx)
	if err != nil {
		return nil, fmt.Errorf("api: stream %s: %w", model, err)
	}
	return &Stream{model: model, s: s}, nil
}

// Send sends one request.
func (s *Stream) Send(inputs map[string]*tensor.Tensor, opts ...InferOption) error {
	req, err := NewInferRequest(s.model, inputs)
	if err != nil {
		return fmt.Errorf("api: stream %s: %w", s.model, err)
	}
	for _, o := range opts {
		o(req)
	}
	if err := s.s.Send(req); err != nil {
		return fmt.Errorf("api: stream %s: %w", s.model, err)
	}
	return nil
}

// CloseSend tells the server no more requests come; Recv then returns the
// remaining answers and io.EOF.
func (s *Stream) CloseSend() error { return s.s.CloseSend() }

// Recv returns the next answer: its id and outputs, or an error wrapping
// ErrStream for a failed request, io.EOF at the end of the stream, or the
// stream's own error.
func (s *Stream) Recv() (id string, outputs map[string]*tensor.Tensor, err error) {
	r, err := s.s.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", nil, io.EOF
		}
		return "", nil, fmt.Errorf("api: stream %s: %w", s.model, err)
	}
	resp := r.GetInferResponse()
	if msg := r.GetErrorMessage(); msg != "" {
		return resp.GetId(), nil, fmt.Errorf("%w: %s", ErrStream, msg)
	}
	out, err := ResponseTensors(resp)
	if err != nil {
		return resp.GetId(), nil, fmt.Errorf("api: stream %s: response: %w", s.model, err)
	}
	return resp.GetId(), out, nil
}
