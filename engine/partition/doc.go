// Package partition runs a graph on a device that lacks some of its ops:
// each node goes to the device when the device supports it (see
// device.Supporter), to the CPU otherwise, as ONNX Runtime's execution
// providers do with the CPU last. Nodes form segments (maximal runs of one
// device in topological order); a device segment is compiled as a subgraph
// by the device's Executor, a CPU segment runs in a package engine Engine,
// and the resulting Program passes host tensors between them.
//
// A graph the device supports entirely is one segment, compiled exactly as
// without the partitioner (same program, same plan sections), unless the
// device runs a node whose outputs' shapes depend on the data
// (DataDependent: NonMaxSuppression on cuda): the device nodes that read
// them then start another device segment, compiled for the shapes each run
// gives. The
// partition of a graph is deterministic, so a plan built through it loads
// through it with its sections lining up.
package partition
