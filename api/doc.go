// Package api holds kiln's wire types for the KServe v2 / Open Inference
// Protocol and a small Go client for it.
//
// The gRPC messages and service live in the subpackage inference, generated
// from inference/grpc_service.proto (run generate.sh after editing it). This
// package converts between those messages and *tensor.Tensor (both the
// typed *_contents fields and the raw little-endian raw_input_contents /
// raw_output_contents), maps KServe datatype names ("FP32", "BYTES", ...) to
// tensor.DType for the HTTP side too (and the TYPE_* enum of model
// configurations), and offers Client, a thin wrapper of the generated gRPC
// client that speaks in tensors: Infer, health and metadata calls, and
// ModelStreamInfer streams. WebSocketStream (DialWebSocket) is the client of
// kiln serve's WebSocket inference stream.
package api
