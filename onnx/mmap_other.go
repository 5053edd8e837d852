//go:build !unix

package onnx

import (
	"io"
	"os"
)

// mapFile reads fd's whole contents: this platform has no mmap here.
func mapFile(fd *os.File) (*mapping, error) {
	b, err := io.ReadAll(fd)
	return &mapping{data: b}, err
}
