//go:build unix

package shm

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestRegistry(t *testing.T) {
	dir := t.TempDir()
	r := &Registry{Dir: dir}
	defer r.Close()
	p, err := Create(dir, "/obj", 3*4096)
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("0123456789abcdef"), 3*4096/16)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "folder"), 0o755)
	os.Symlink(p, filepath.Join(dir, "link"))
	for _, c := range []struct {
		name, key      string
		offset, size   uint64
		err            error
		describe       string
		readAt, readSz uint64
	}{
		{"a", "/obj", 0, 4096, nil, "a page", 0, 16},
		{"b", "obj", 5000, 100, nil, "off a page edge, key without slash", 0, 100},
		{"c", "/obj", 3*4096 - 1, 1, nil, "the last byte", 0, 1},
		{"a", "/obj", 0, 1, ErrExists, "a name taken", 0, 0},
		{"d", "/obj", 3 * 4096, 1, ErrInvalid, "past the end", 0, 0},
		{"e", "/obj", math.MaxUint64, 2, ErrInvalid, "offset+size overflows", 0, 0},
		{"f", "/obj", 0, 0, ErrInvalid, "empty", 0, 0},
		{"", "/obj", 0, 1, ErrInvalid, "no name", 0, 0},
		{"g", "/missing", 0, 1, ErrInvalid, "no such object", 0, 0},
		{"h", "/../obj", 0, 1, ErrInvalid, "a path", 0, 0},
		{"i", "/", 0, 1, ErrInvalid, "no key", 0, 0},
		{"j", "/folder", 0, 1, ErrInvalid, "a folder", 0, 0},
		{"k", "/link", 0, 1, ErrInvalid, "a symbolic link", 0, 0},
	} {
		err := r.Register(c.name, c.key, c.offset, c.size)
		if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Fatalf("%s: Register = %v, want %v", c.describe, err, c.err)
		}
		if err != nil {
			continue
		}
		got, err := r.Read(c.name, c.readAt, c.readSz)
		if want := content[c.offset+c.readAt:][:c.readSz]; err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: Read = %q %v, want %q", c.describe, got, err, want)
		}
	}
	for _, c := range []struct {
		name         string
		offset, size uint64
		err          error
	}{
		{"b", 0, 100, nil},
		{"b", 99, 1, nil},
		{"b", 100, 0, nil},
		{"b", 100, 1, ErrInvalid},
		{"b", 1, 100, ErrInvalid},
		{"b", math.MaxUint64, 2, ErrInvalid},
		{"b", 2, math.MaxUint64, ErrInvalid},
		{"zz", 0, 1, ErrNotFound},
	} {
		_, err := r.Read(c.name, c.offset, c.size)
		if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Errorf("Read(%s, %d, %d) = %v, want %v", c.name, c.offset, c.size, err, c.err)
		}
		werr := r.Write(c.name, c.offset, make([]byte, min(c.size, 1<<20)))
		if c.size < 1<<20 && (!errors.Is(werr, c.err) || (werr == nil) != (c.err == nil)) {
			t.Errorf("Write(%s, %d, %d bytes) = %v, want %v", c.name, c.offset, c.size, werr, c.err)
		}
	}
	// a write lands in the object at the region's offset
	if err := r.Write("b", 10, []byte("WRITTEN")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b[5010:5017]) != "WRITTEN" {
		t.Fatalf("object after the write: %q", b[5000:5030])
	}
	st, err := r.Status("")
	if err != nil || len(st) != 3 || st[0].Name != "a" || st[1] != (Region{Name: "b", Key: "obj", Offset: 5000, ByteSize: 100}) {
		t.Fatalf("status %+v %v", st, err)
	}
	if err := r.Unregister("b"); err != nil {
		t.Fatal(err)
	}
	if err := r.Unregister("b"); err != nil {
		t.Fatalf("unregistering an unknown name: %v", err)
	}
	if _, err := r.Read("b", 0, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read after unregister: %v", err)
	}
	if err := r.Unregister(""); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Status(""); len(st) != 0 {
		t.Fatalf("status after unregistering all: %v", st)
	}
}

// TestUnregisterWhileReading: unregistering waits for the copies in
// progress; reads after it fail cleanly (run with -race).
func TestUnregisterWhileReading(t *testing.T) {
	dir := t.TempDir()
	r := &Registry{Dir: dir}
	if _, err := Create(dir, "obj", 1<<20); err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		if err := r.Register("r", "obj", 0, 1<<20); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					if _, err := r.Read("r", 0, 1<<20); err != nil && !errors.Is(err, ErrNotFound) {
						t.Error(err)
						return
					}
				}
			}()
		}
		if err := r.Unregister("r"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}

// TestShrunkObject: an object truncated under a region is an error on
// access, not a crash.
func TestShrunkObject(t *testing.T) {
	dir := t.TempDir()
	r := &Registry{Dir: dir}
	defer r.Close()
	p, err := Create(dir, "obj", 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Register("r", "obj", 0, 1<<16); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read("r", 0, 1<<16); !errors.Is(err, ErrFault) {
		t.Fatalf("read: %v, want ErrFault", err)
	}
	if err := r.Write("r", 0, []byte{1}); !errors.Is(err, ErrFault) {
		t.Fatalf("write: %v, want ErrFault", err)
	}
}
