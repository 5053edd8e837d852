// Package perf is kiln's load generator, in the spirit of Triton's
// perf_analyzer: it drives a KServe v2 server over HTTP (JSON or the
// binary data extension), gRPC (unary or the bidirectional stream) or the
// WebSocket stream, at a range of concurrencies or request rates (constant
// or Poisson arrivals), repeats measurement windows until throughput and
// p95 latency are stable, and reports throughput, latency percentiles,
// errors by kind and the server's own time breakdown (queue, compute
// input, infer, output) taken from its statistics endpoint.
//
// A stability percentage of 0 runs every step for MaxTrials windows (a run
// of fixed length); closing Config.Stop ends a run early with a report of
// the windows measured, the requests in flight finished and counted.
// Statistics that a kiln gateway passes on (one backend's) are not used.
//
// Reports are a text table (WriteTable), a perf_analyzer-like CSV
// (WriteCSV), JSON (WriteJSON) and a plot of latency percentiles against
// throughput (WritePlot, SVG or PNG).
package perf
