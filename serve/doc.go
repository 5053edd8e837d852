// Package serve is kiln's inference server core: it loads models from a
// Triton-style repository (package repository), runs each model version
// behind a dynamic batcher (package scheduler), and answers inference,
// health, metadata, statistics and repository requests. The protocol
// front ends (HTTP in package httpapi, gRPC) call Server's methods and map
// its sentinel errors to status codes.
package serve
