package plan

import (
	"fmt"
	"io"
	"math"
	"os"

	"github.com/kilnai/kiln/tensor"
)

// readFile reads the file at path into memory aligned to Align, so that
// weights are used in place from the buffer as from a mapping, but in
// memory of the process's own that no change to the file can reach.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		b, err := io.ReadAll(f)
		if err != nil {
			return nil, err
		}
		a := tensor.AlignedBytes(len(b))
		copy(a, b)
		return a, nil
	}
	if size > math.MaxInt {
		return nil, fmt.Errorf("%s: %d bytes is too large for this platform", path, size)
	}
	b := tensor.AlignedBytes(int(size))
	if _, err := io.ReadFull(f, b); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, fmt.Errorf("%s shrank while it was read (%d bytes expected): it is being rewritten", path, size)
		}
		return nil, err
	}
	return b, nil
}
