package onnx

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"unsafe"

	"github.com/kilnai/kiln/tensor"
)

// TestLoadOwnsItsMemory: Load reads the model and its external data into
// aligned memory of its own, so that truncating or rewriting the files in
// place (cp over them) after the data was read changes nothing, where a
// mapping would fault (SIGBUS, which would kill this test). External data
// first asked for after its file was cut is an error, not a crash.
// LoadMapped maps the files (on unix) and reads the same values.
func TestLoadOwnsItsMemory(t *testing.T) {
	side := append(make([]byte, 64), float32Bytes(1, 2, 3, 4, 5, 6)...)
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "w.bin"), side, 0o644); err != nil {
			t.Fatal(err)
		}
		return writeModel(t, dir,
			externalTensor("a", "w.bin", 64, 16, 2, 2),
			TensorToProto("inline", tensor.FromFloat32([]float32{9, 8}, 2)),
		)
	}
	read := func(f *File) (map[string][]float32, error) {
		got := map[string][]float32{}
		for _, init := range f.Model.Graph.Initializer {
			x, err := TensorFromProto(init, f)
			if err != nil {
				return nil, err
			}
			// external data at a 64-byte offset is used in place, aligned
			if init.Name == "a" && uintptr(unsafe.Pointer(&x.Data[0]))%tensor.Alignment != 0 {
				return nil, errors.New(init.Name + " is not aligned")
			}
			got[init.Name] = x.Float32s()
		}
		return got, nil
	}
	want := map[string][]float32{"a": {1, 2, 3, 4}, "inline": {9, 8}}

	t.Run("read, files changed after", func(t *testing.T) {
		path := setup(t)
		f, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if f.Mapped() {
			t.Fatal("Load mapped the file")
		}
		if _, err := read(f); err != nil { // reads the external data file
			t.Fatal(err)
		}
		for _, name := range []string{path, filepath.Join(filepath.Dir(path), "w.bin")} {
			if err := os.Truncate(name, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, []byte("rewritten"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := read(f)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after the files changed: %v, want %v", got, want)
		}
	})
	t.Run("read, external data cut before use", func(t *testing.T) {
		path := setup(t)
		f, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Truncate(filepath.Join(filepath.Dir(path), "w.bin"), 8); err != nil {
			t.Fatal(err)
		}
		if _, err := read(f); !errors.Is(err, ErrExternalData) {
			t.Fatalf("external data cut before it was read: %v, want ErrExternalData", err)
		}
	})
	t.Run("mapped", func(t *testing.T) {
		f, err := LoadMapped(setup(t))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if !f.Mapped() && runtime.GOOS != "windows" && runtime.GOOS != "plan9" && runtime.GOOS != "js" && runtime.GOOS != "wasip1" {
			t.Error("LoadMapped did not map the file")
		}
		got, err := read(f)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%v, want %v", got, want)
		}
	})
}
