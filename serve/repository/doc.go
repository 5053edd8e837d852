// Package repository reads a Triton-style model repository:
// <repo>/<model>/config.pbtxt (protobuf text format with Triton's field
// names, parsed by a small schema-less parser and mapped onto Config) and
// <repo>/<model>/<version>/model.onnx, loaded with kiln.Load. A model without
// config.pbtxt is described by its own inputs and outputs.
package repository
