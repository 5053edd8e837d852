// Package engine turns an ir.Graph into something that runs: it validates
// the graph, infers every shape, prepares one kernel per node, plans the
// memory of the intermediates and executes the nodes in order on the CPU.
//
// An Engine is immutable after New or NewWithOptions and shared: kernels,
// weights, profiles and the memory plan. The memory plan sizes every
// intermediate of the top-level graph at the max input shapes
// (Options.MaxShapes, the profiles' max shapes, or the declared static
// shapes), computes its lifetime over the step order and gives it an offset
// in one arena, so that values whose lifetimes do not overlap share memory
// (see Engine.Memory). A run with smaller inputs uses the same planning
// done for its bucket (its free dimensions rounded up to a power of two, at
// most the max), so that a context's arena is sized for the shapes it runs,
// not for the largest its profiles allow (see Context.ArenaBytes); an
// engine without max shapes plans for each run's own shapes. A
// Context owns the per-request state, the arena itself: many contexts run
// one engine concurrently, one goroutine each.
//
// Memory is bounded per context (Options.MemoryLimit, by default half of
// the machine's): an engine whose arena at its max shapes would exceed the
// limit is refused when it is built, and a run that would exceed it fails,
// both with ErrMemory, before anything is allocated.
// Kernels get their output memory from the arena through ops.NewOutput;
// outputs returned to callers never point into it.
//
// Engine.Run takes a Context from those it keeps idle (at most GOMAXPROCS,
// so that their arenas are not allocated again on every call), or makes a
// new one, so that it stays safe for concurrent use.
package engine
