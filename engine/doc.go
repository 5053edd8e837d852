// Package engine turns an ir.Graph into something that runs: it validates
// the graph, infers every shape, prepares one kernel per node, and executes
// the nodes in order on the CPU, freeing each intermediate after its last
// use. An Engine is immutable after New and safe for concurrent Run calls.
package engine
