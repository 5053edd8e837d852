package ir

import "errors"

var (
	// ErrInvalidGraph is returned by Validate for dangling inputs, cycles,
	// duplicate names and similar structural faults.
	ErrInvalidGraph = errors.New("ir: invalid graph")
	// ErrShape is returned for incompatible or impossible shapes.
	ErrShape = errors.New("ir: shape mismatch")
	// ErrAttr is returned for a missing attribute or one of the wrong type.
	ErrAttr = errors.New("ir: bad attribute")
)
