//go:build !unix

package shm

import "fmt"

func mapRegion(p, name, key string, offset, byteSize uint64) (mapping, data []byte, err error) {
	return nil, nil, fmt.Errorf("%w: region %q: system shared memory needs a Unix system", ErrInvalid, name)
}

func unmap([]byte) error { return nil }
