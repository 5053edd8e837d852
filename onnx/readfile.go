package onnx

import (
	"fmt"
	"io"
	"math"
	"os"

	"github.com/kilnai/kiln/tensor"
)

// readFile reads fd's whole contents into memory aligned to
// tensor.Alignment, so that weights are used in place from the buffer as
// they would be from a mapping. The buffer is the process's own: whatever
// later happens to the file (rewritten in place, truncated), the model
// loaded from it is unchanged. A file whose size changes while it is read
// is an error.
func readFile(fd *os.File) (*mapping, error) {
	fi, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() {
		b, err := io.ReadAll(fd)
		if err != nil {
			return nil, err
		}
		a := tensor.AlignedBytes(len(b))
		copy(a, b)
		return &mapping{data: a}, nil
	}
	if size > math.MaxInt {
		return nil, fmt.Errorf("file of %d bytes is too large for this platform", size)
	}
	b := tensor.AlignedBytes(int(size))
	if _, err := io.ReadFull(fd, b); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, fmt.Errorf("the file shrank while it was read (%d bytes expected): it is being rewritten, try again", size)
		}
		return nil, err
	}
	var one [1]byte
	if n, _ := fd.Read(one[:]); n > 0 {
		return nil, fmt.Errorf("the file grew while it was read (%d bytes expected): it is being rewritten, try again", size)
	}
	return &mapping{data: b}, nil
}
