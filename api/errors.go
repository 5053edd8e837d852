package api

import "errors"

var (
	// ErrDatatype is returned for a datatype name or tensor element type
	// that the protocol or kiln does not support.
	ErrDatatype = errors.New("api: unsupported datatype")
	// ErrShape is returned for a shape with a negative or too large
	// dimension.
	ErrShape = errors.New("api: bad shape")
	// ErrSize is returned when a tensor's data does not hold exactly the
	// number of elements (or bytes) its shape says.
	ErrSize = errors.New("api: data size does not match shape")
	// ErrContents is returned for malformed tensor contents: data missing or
	// given twice, a duplicate tensor name, a bad BYTES length prefix, a
	// value out of range for its datatype.
	ErrContents = errors.New("api: malformed tensor contents")
)
