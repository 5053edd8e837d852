//go:build !amd64 || purego

package fastmath

import "testing"

// forPaths runs f once: without the assembly loops there is one path.
func forPaths(t *testing.T, f func(t *testing.T)) { f(t) }
