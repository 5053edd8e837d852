// Package ir is kiln's graph intermediate representation: values with a data
// type and a shape whose dimensions may be known, symbolic ("batch") or
// unknown; nodes with typed attributes; graphs with topological ordering and
// validation. Operator semantics (shape inference, kernels) live in package
// ops; ir knows nothing of individual operators.
package ir
