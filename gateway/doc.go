// Package gateway is kiln's model-aware KServe v2 gateway: one front door,
// over HTTP (JSON and the binary-data extension), gRPC and the WebSocket
// stream, for many kiln serve (or Triton) backends.
//
// A Gateway learns its backends from a Discoverer (a static list or file,
// DNS re-resolved, Kubernetes EndpointSlices), polls each one's readiness,
// repository index (which model versions are READY) and queue depth, and
// routes a request only to backends where its model is ready, picking among
// them with a balancing Policy from a small registry (least outstanding
// requests, power of two choices on the backends' own queue depth, round
// robin). Requests with a sequence_id stick to one backend.
//
// Health: active polls, passive ejection after consecutive failures, slow
// start for a new or readmitted backend. Retries: a request that did not
// reach a backend, got 503 / UNAVAILABLE (refused before running), or lost
// its connection before any answer (stateless inference only: never a
// sequence request) is retried on another backend within a retry budget.
// Admission: per-client bearer tokens with token-bucket rate limits, and
// 429 / RESOURCE_EXHAUSTED when every eligible backend's queue is full.
//
// Bodies are proxied as bytes: the gateway reads only the model from the
// path (or the gRPC message's first fields) and, for stickiness, the
// sequence_id parameter; tensors are never decoded.
//
// Serving: HTTPServer serves Handler over HTTP/1.1 with the gateway's own
// request loop (h1server.go) and hands WebSocket upgrades and unusual
// requests to net/http's server; requests to backends go through the
// gateway's own keep-alive HTTP/1.1 client (h1client.go). In the steady
// state an HTTP request through the gateway allocates nothing and wakes no
// goroutine but its own. GRPCServerOptions serve the gRPC API with grpc-go,
// messages passed through as grpc-go's buffers (rawCodec).
package gateway
