package tensor

import "errors"

var (
	// ErrDType is returned for an unknown or unsupported element type.
	ErrDType = errors.New("tensor: unsupported data type")
	// ErrShape is returned when a shape is invalid or does not match the data.
	ErrShape = errors.New("tensor: bad shape")
)
