package grpcapi

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// grpc-go answers a request message its codec cannot decode (truncated
// wire data, a string field that is not UTF-8) with INTERNAL before any
// of kiln's code runs: a client's error reported as the server's. The
// codec below lets such a message through, remembering why it failed, and
// the interceptors answer INVALID_ARGUMENT instead.

// badMessages maps a request message that failed to decode to its error,
// from the codec's Unmarshal to the interceptor that takes it out.
var badMessages sync.Map // any (a message pointer) -> error

// lenientCodec is the proto codec whose Unmarshal records errors rather
// than returning them.
type lenientCodec struct{ encoding.CodecV2 }

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.CodecV2.Unmarshal(data, v); err != nil {
		badMessages.Store(v, err)
	}
	return nil
}

// takeBad returns the decoding error of message m, if it had one.
func takeBad(m any) error {
	if err, ok := badMessages.LoadAndDelete(m); ok {
		return status.Errorf(codes.InvalidArgument, "grpcapi: the request message cannot be decoded: %v", err)
	}
	return nil
}

// DecodeErrorOptions returns the grpc.ServerOptions that turn request
// messages that cannot be decoded into INVALID_ARGUMENT answers. Give them
// after the authentication options, so that a client without credentials
// is told so first.
func DecodeErrorOptions() []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if err := takeBad(req); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		return next(srv, checkedStream{ss})
	}
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(lenientCodec{encoding.GetCodecV2("proto")}),
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(stream),
	}
}

// checkedStream answers a stream's undecodable messages as the unary
// interceptor does.
type checkedStream struct{ grpc.ServerStream }

func (s checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return takeBad(m)
}
