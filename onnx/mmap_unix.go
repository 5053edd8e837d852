//go:build unix

package onnx

import (
	"fmt"
	"io"
	"math"
	"os"
	"syscall"
)

// mapFile maps fd's whole contents privately (copy on write, never written
// back), or reads them when fd cannot be mapped (not a regular file, or mmap
// fails). fd may be closed once mapFile returns.
func mapFile(fd *os.File) (*mapping, error) {
	fi, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() || size == 0 {
		b, err := io.ReadAll(fd)
		return &mapping{data: b}, err
	}
	if size > math.MaxInt {
		return nil, fmt.Errorf("file of %d bytes is too large for this platform", size)
	}
	b, err := syscall.Mmap(int(fd.Fd()), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		b, err := io.ReadAll(fd)
		return &mapping{data: b}, err
	}
	return &mapping{data: b, release: func() error { return syscall.Munmap(b) }}, nil
}
