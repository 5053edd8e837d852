package grpcapi

import (
	"runtime"

	"google.golang.org/grpc"
)

// StreamWorkers is the server option that runs RPCs on a pool of worker
// goroutines (4 per GOMAXPROCS; grpc-go starts a goroutine of its own
// for an RPC that finds them all busy) instead of a new goroutine for
// each. A request that finds its model's instance idle runs the model on
// the RPC's goroutine (the scheduler's fast path): on a fresh goroutine
// each request would grow its stack again, 8 KB at a time, to the
// engine's depth; a worker keeps its grown stack. BenchmarkRequestPath
// measures both.
func StreamWorkers() grpc.ServerOption {
	return grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0)))
}
