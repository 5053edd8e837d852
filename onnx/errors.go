package onnx

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var (
	// ErrMalformed is returned (wrapped, usually in a *DecodeError) for
	// protobuf wire data that cannot be decoded, and for messages whose
	// contents contradict each other (a tensor whose data does not match its
	// dims, for example).
	ErrMalformed = errors.New("onnx: malformed data")
	// ErrExternalData is returned when a tensor's external data cannot be
	// resolved: no resolver, a missing or unsafe location, a range outside
	// the file, or an I/O error.
	ErrExternalData = errors.New("onnx: external data")
	// ErrUnsupported is returned for valid ONNX that kiln does not handle,
	// such as a tensor of a data type kiln cannot hold.
	ErrUnsupported = errors.New("onnx: unsupported")
)

// DecodeError describes malformed protobuf data: where in the message tree
// and at which byte of the input the decoder gave up. It wraps ErrMalformed.
type DecodeError struct {
	// Path names the field being decoded, from the outermost message down,
	// e.g. "ModelProto.graph.initializer[3].dims".
	Path string
	// Offset is the byte offset in the decoded input where the problem was
	// found.
	Offset int
	// Reason says what is wrong, e.g. "truncated varint".
	Reason string
}

// Error returns a one-line description of the problem.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("%v: %s at byte %d: %s", ErrMalformed, e.Path, e.Offset, e.Reason)
}

// Unwrap returns ErrMalformed, so errors.Is(err, ErrMalformed) holds.
func (e *DecodeError) Unwrap() error { return ErrMalformed }

// prefixPath prepends the field name (with index idx when idx >= 0) to the
// path of err if it is a *DecodeError, and returns err.
func prefixPath(err error, name string, idx int) error {
	var de *DecodeError
	if !errors.As(err, &de) {
		return err
	}
	var b strings.Builder
	b.WriteString(name)
	if idx >= 0 {
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(idx))
		b.WriteByte(']')
	}
	if de.Path != "" {
		b.WriteByte('.')
		b.WriteString(de.Path)
	}
	de.Path = b.String()
	return err
}
