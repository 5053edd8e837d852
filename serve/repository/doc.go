// Package repository reads a Triton-style model repository:
// <repo>/<model>/config.pbtxt (protobuf text format with Triton's field
// names, parsed by a small schema-less parser and mapped onto Config) and
// <repo>/<model>/<version>/model.onnx (or model.plan). Each version's file
// is loaded by a ModelLoader: kiln serve's builds an engine with the
// options BuildOptions derives from the config (device from instance_group,
// batch range from max_batch_size, kiln's parameters precision,
// calibration_data, dims and opt_level) through kiln's plan cache; without
// one, kiln.Load runs the graph as it is. A model without config.pbtxt is
// described by its own inputs and outputs.
package repository
