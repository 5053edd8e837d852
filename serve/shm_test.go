package serve_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/shm"
	"github.com/kilnai/kiln/tensor"
)

// TestShmInputTypes reads inputs of each kind of datatype from a region:
// raw numbers, BOOL bytes (0 or 1) and BYTES elements (4-byte length, then
// the bytes), with bad ones refused as ErrInvalid.
func TestShmInputTypes(t *testing.T) {
	if st, err := os.Stat(shm.DefaultDir); err != nil || !st.IsDir() {
		t.Skipf("no %s (POSIX shared memory) on this system", shm.DefaultDir)
	}
	key := fmt.Sprintf("/kiln-types-%d", os.Getpid())
	path, err := shm.Create("", key, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	content := []byte("\x03\x00\x00\x00abc\x02\x00\x00\x00de" + "\x01\x00\x01\x02" + "\x01\x00\x00\x00\x02\x00\x00\x00")
	if err := os.WriteFile(path, append(content, make([]byte, 64-len(content))...), 0o600); err != nil {
		t.Fatal(err)
	}
	s := serve.New(serve.Options{})
	if err := s.RegisterSystemShm("r", key, 0, 64); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		dt           tensor.DType
		shape        []int
		offset, size uint64
		want         string
		err          error
	}{
		{"bytes", tensor.String, []int{2}, 0, 13, "[abc de]", nil},
		{"bytes, one short", tensor.String, []int{2}, 0, 12, "", serve.ErrInvalid},
		{"bytes, a byte left", tensor.String, []int{1}, 0, 8, "", serve.ErrInvalid},
		{"bool", tensor.Bool, []int{3}, 13, 3, "[1 0 1]", nil},
		{"bool, a 2", tensor.Bool, []int{4}, 13, 4, "", serve.ErrInvalid},
		{"int32", tensor.Int32, []int{2}, 17, 8, "[1 2]", nil},
		{"int32, size not the shape's", tensor.Int32, []int{2}, 17, 12, "", serve.ErrInvalid},
		{"past the region", tensor.Int32, []int{2}, 60, 8, "", serve.ErrInvalid},
		{"negative dimension", tensor.Int32, []int{-1}, 0, 4, "", serve.ErrInvalid},
	} {
		got, err := s.ShmInput("x", c.dt, c.shape, serve.ShmRef{Region: "r", Offset: c.offset, ByteSize: c.size})
		if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Fatalf("%s: %v, want %v", c.name, err, c.err)
		}
		if err != nil {
			continue
		}
		var s string
		switch c.dt {
		case tensor.String:
			s = fmt.Sprint(got.Strings)
		case tensor.Bool:
			s = fmt.Sprint(got.Data)
		case tensor.Int32:
			s = fmt.Sprint(got.Int32s())
		}
		if s != c.want || fmt.Sprint(got.Shape) != fmt.Sprint(c.shape) {
			t.Fatalf("%s: %s %v, want %s", c.name, s, got.Shape, c.want)
		}
	}
}
