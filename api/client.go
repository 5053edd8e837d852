package api

import (
	"context"
	"errors"
	"fmt"

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

// Infer runs model on inputs (sent as raw contents) and returns every output
// the server answers with, by name.
func (c *Client) Infer(ctx context.Context, model string, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	req, err := NewInferRequest(model, inputs)
	if err != nil {
		return nil, fmt.Errorf("api: infer %s: %w", model, err)
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
