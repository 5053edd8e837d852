// Package httpapi is the KServe v2 (Open Inference Protocol) HTTP front end
// of a serve.Server: health, metadata, inference with JSON tensors and the
// binary tensor data extension, model config and statistics, and the
// repository extension. Errors are answered as {"error": "..."} with a status
// code chosen from the server's sentinel errors.
package httpapi
