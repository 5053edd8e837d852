//go:build unix

package shm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const maxInt = int(^uint(0) >> 1)

// mapRegion maps byteSize bytes of the object at path p from offset. It
// returns the whole mapping (from the page below offset) and the region's
// bytes within it.
func mapRegion(p, name, key string, offset, byteSize uint64) (mapping, data []byte, err error) {
	// O_NOFOLLOW, as shm_open: a link under the folder never leads elsewhere
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: region %q: cannot open shared memory object %q: %w", ErrInvalid, name, key, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, nil, fmt.Errorf("%w: region %q: %w", ErrInvalid, name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil, fmt.Errorf("%w: region %q: %q is not a shared memory object", ErrInvalid, name, key)
	}
	size := uint64(st.Size)
	if offset > size || byteSize > size-offset {
		return nil, nil, fmt.Errorf("%w: region %q: offset %d + byte_size %d is past the end of %q (%d bytes)", ErrInvalid, name, offset, byteSize, key, size)
	}
	page := uint64(os.Getpagesize())
	start := offset / page * page
	length := offset - start + byteSize
	if length > uint64(maxInt) || start > uint64(maxInt) {
		return nil, nil, fmt.Errorf("%w: region %q is too large to map", ErrInvalid, name)
	}
	m, err := unix.Mmap(fd, int64(start), int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: region %q: cannot map %q: %w", ErrInvalid, name, key, err)
	}
	return m, m[offset-start:], nil
}

func unmap(m []byte) error { return unix.Munmap(m) }
