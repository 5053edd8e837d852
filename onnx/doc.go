// Package onnx is kiln's ONNX front end: the protobuf messages of the ONNX
// specification (onnx.proto, IR versions up to 10, and onnx-data.proto for
// test data), a hand-written decoder and encoder for them, a loader that
// reads model files into aligned memory (or memory-maps them, LoadMapped),
// and the conversion between ONNX tensors and
// kiln's tensor.Tensor.
//
// The decoder is written for large models and for hostile input:
//
//   - It never copies bulk data. Fields of protobuf type bytes (TensorProto
//     raw_data, string_data, AttributeProto s and strings, ...) are
//     sub-slices of the input, so the weights of a model loaded with Load
//     stay in the memory the file was read into until they are used. Fields of protobuf
//     type string (names, op types, domains) are copied into Go strings, so
//     they stay valid after the input goes away.
//   - Malformed, truncated or random input is an error wrapping
//     ErrMalformed (a *DecodeError naming the field path and byte offset),
//     never a panic, a hang or an allocation out of proportion to the input.
//     Messages nest at most MaxDepth deep.
//   - Unknown fields are skipped; repeated numeric fields are accepted both
//     packed and unpacked. A known field with the wrong wire type is an
//     error.
//
// Tensors whose data lives outside the model (data_location EXTERNAL, the
// way models over 2 GiB are stored) are resolved through an
// ExternalResolver; a *File from Load is one, reading the side files
// relative to the model's directory and refusing paths that leave it.
//
// A typical use:
//
//	f, err := onnx.Load("model.onnx")
//	if err != nil { ... }
//	defer f.Close() // after the last use of any tensor read from f
//	for _, init := range f.Model.Graph.Initializer {
//		t, err := onnx.TensorFromProto(init, f)
//		...
//	}
package onnx
