// Package serve is kiln's inference server core: it loads models from a
// Triton-style repository (package repository), runs each model version
// behind a dynamic batcher (package scheduler), and answers inference,
// health, metadata, statistics and repository requests. The protocol
// front ends (HTTP and WebSocket in package httpapi, gRPC in package grpcapi)
// call Server's methods and map its sentinel errors to status codes;
// package metrics exports Prometheus metrics under Triton's names.
//
// Serving the bundled example model as "tinycnn" (HTTP on 8000, gRPC on
// 8001, metrics on 8002):
//
//	kiln serve
//	curl localhost:8000/v2/health/ready
//	curl localhost:8000/v2/models/tinycnn
//	curl -X POST localhost:8000/v2/models/tinycnn/infer -d '{"inputs":[{"name":"image",
//	    "shape":[1,3,32,32],"datatype":"FP32","data":[0.5, ... 3072 values ...]}]}'
//	grpcurl -plaintext -import-path api/inference -proto grpc_service.proto \
//	    -d '{"name":"tinycnn"}' localhost:8001 inference.GRPCInferenceService/ModelReady
//	curl localhost:8002/metrics
//
// A repository, in Triton's layout:
//
//	kiln serve --model-repository DIR [--model-control-mode none|poll|explicit]
//
//	DIR/resnet/config.pbtxt      optional; without it the model's own inputs and
//	                             outputs define it (max_batch_size 8 when every
//	                             input's first dimension is symbolic, else 0)
//	DIR/resnet/1/model.onnx
//
// A config that turns on dynamic batching with two priority levels:
//
//	max_batch_size: 8
//	instance_group [ { count: 2 kind: KIND_CPU } ]
//	dynamic_batching {
//	  preferred_batch_size: [ 4, 8 ]
//	  max_queue_delay_microseconds: 500
//	  priority_levels: 2
//	  default_priority_level: 2
//	  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 100000
//	                         allow_timeout_override: true max_queue_size: 64 }
//	}
//
// Status codes: 400 bad input, 404 unknown model or version, 413 body too
// large, 429 queue full (gRPC RESOURCE_EXHAUSTED), 503 not ready, shutting
// down or queue timeout. On SIGTERM the server turns not ready at once,
// refuses new requests, lets the queued and running ones finish within
// --exit-timeout, and exits 0.
package serve
