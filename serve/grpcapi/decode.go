package grpcapi

import (
	"context"
	"sync"
	"sync/atomic"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
)

// grpc-go answers a request message its codec cannot decode (truncated
// wire data, a string field that is not UTF-8) with INTERNAL before any
// of kiln's code runs: a client's error reported as the server's. The
// codec below lets such a message through, remembering why it failed, and
// the interceptors answer INVALID_ARGUMENT instead.

// badMessages maps a request message that failed to decode to its error,
// from the codec's Unmarshal to the interceptor that takes it out.
var badMessages sync.Map // any (a message pointer) -> error

// badCount is how many messages badMessages holds: none, as nearly always,
// spares takeBad the look-up.
var badCount atomic.Int64

// lenientCodec is the proto codec whose Unmarshal records errors rather
// than returning them.
type lenientCodec struct{ encoding.CodecV2 }

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	var err error
	if r, ok := v.(*inference.ModelInferRequest); ok {
		err = unmarshalInferRequest(data, r)
	} else {
		err = c.CodecV2.Unmarshal(data, v)
	}
	if err != nil {
		badCount.Add(1)
		badMessages.Store(v, err)
	}
	return nil
}

// takeBad returns the decoding error of message m, if it had one.
func takeBad(m any) error {
	if badCount.Load() == 0 {
		return nil
	}
	if err, ok := badMessages.LoadAndDelete(m); ok {
		badCount.Add(-1)
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

// inputsInPlace decodes the inputs of r as api.RequestTensors does, but
// uses each input's raw_input_contents as its tensor's data, without a
// copy, when nothing needs checking beyond its size: a numeric datatype
// other than BOOL, a valid shape, no typed contents beside the raw ones,
// and bytes aligned as tensors are (the message owns them: the codec
// unmarshals into fresh slices). Anything else goes to api.RequestTensors,
// which checks and copies, and words the errors.
func inputsInPlace(r *inference.ModelInferRequest) (map[string]*tensor.Tensor, error) {
	ins, raw := r.GetInputs(), r.GetRawInputContents()
	if len(ins) == 0 || len(raw) != len(ins) {
		return api.RequestTensors(r)
	}
	out := make(map[string]*tensor.Tensor, len(ins))
	for i, in := range ins {
		name, b := in.GetName(), raw[i]
		dt, err := api.ParseDatatype(in.GetDatatype())
		if err != nil || dt == tensor.String || dt == tensor.Bool || name == "" || in.GetContents() != nil || out[name] != nil ||
			len(b) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%tensor.Alignment != 0 {
			return api.RequestTensors(r)
		}
		// the tensor and a short shape in one allocation
		w := &shapedTensor{}
		dims := w.dims[:0]
		if len(in.GetShape()) > len(w.dims) {
			dims = nil
		}
		shape, err := api.AppendShape(dims, in.GetShape())
		if err != nil || tensor.NumElements(shape)*dt.Size() != len(b) {
			return api.RequestTensors(r)
		}
		// aligned (above) and sized: the tensor is the bytes as they are
		w.t = tensor.Tensor{DType: dt, Shape: shape[:len(shape):len(shape)], Data: b}
		out[name] = &w.t
	}
	return out, nil
}

// shapedTensor is an input tensor's memory (inputsInPlace).
type shapedTensor struct {
	t    tensor.Tensor
	dims [4]int
}
