package grpcapi

import (
	"runtime"

	"google.golang.org/grpc"
)

// PathOptions are the server options of kiln serve's gRPC request path:
//
//   - RPCs run on a pool of grpc-go's stream workers (4 per GOMAXPROCS;
//     grpc-go starts a goroutine of its own for an RPC that finds them all
//     busy) instead of a new goroutine each. A request that finds its
//     model's instance idle runs the model on the RPC's goroutine (the
//     scheduler's fast path): a fresh goroutine would grow its stack again
//     on every request, 8 KB at a time, to the engine's depth; a worker
//     keeps its grown stack.
//   - The HTTP/2 flow control windows are fixed (streamWindow, connWindow),
//     which turns off grpc-go's bandwidth estimation: it pings the client
//     as request data comes in and updates the windows in small steps,
//     system calls and goroutine wake-ups on every RPC (kiln gateway
//     measured a third fewer system calls per unary RPC with fixed ones).
//
// InFlightOption is not among them: its stats handler cost about 2 us of
// CPU a request at 16 clients and gained nothing measurable
// (bench/results/grpc-throughput.md, 2026-12-06 22:07).
//
// BenchmarkRequestPath measures them.
func PathOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow)}
}

// streamWindow and connWindow are the HTTP/2 flow control windows of kiln
// serve's gRPC server, per stream and per connection: a client may send
// this much before the server reads it.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)
