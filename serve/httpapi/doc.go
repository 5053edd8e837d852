// Package httpapi is the KServe v2 (Open Inference Protocol) HTTP front end
// of a serve.Server: health, metadata, inference with JSON tensors and the
// binary tensor data extension, WebSocket streams, model config and
// statistics, and the repository extension. Errors are answered as
// {"error": "..."} with a status code chosen from the server's sentinel
// errors; a known path asked with another method is 405 with an Allow
// header.
//
// An inference request costs what it carries, in this order: the model and
// version are looked up and a full queue is refused (429) before the body
// is read; the JSON is scanned in place, each input's declared name,
// datatype and shape checked against the model (and its element count
// against the bytes that carry it) before its data is decoded; numbers are
// parsed straight into the tensor's buffer and binary tensor data read
// straight from the body into it. Decoding allocates the tensors, the
// request's strings and a constant, never boxed values.
package httpapi
