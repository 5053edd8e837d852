package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// File is a model read from disk: the decoded ModelProto, the directory its
// external data is resolved against, and the memory that backs both. Load
// reads the model file (and every external data file, once used) into
// aligned memory of its own; LoadMapped memory-maps them instead. Either
// way weights are used in place from that memory: bytes fields of Model and
// tensors made from it by TensorFromProto may point into it, and Close
// releases it.
//
// Mappings are private: the files are never written, and a tensor whose
// data is modified in place gets private copies of the pages it touches.
// A File's methods are safe for concurrent use.
type File struct {
	// Model is the decoded model. Close sets it to nil.
	Model *ModelProto
	// Dir is the directory external data locations are relative to ("" when
	// there is none, and then external data cannot be resolved).
	Dir string

	data    []byte       // the serialized model
	release func() error // unmaps data; nil when data is not ours to release
	mapped  bool         // whether data is memory-mapped
	mmap    bool         // map external data files (LoadMapped) rather than read them

	mu     sync.Mutex
	closed bool
	ext    map[string]*mapping // external data files by cleaned location
}

type mapping struct {
	data    []byte
	release func() error
}

var _ ExternalResolver = (*File)(nil)

// Load reads the model at path into memory (aligned, so that weights are
// used in place from it) and decodes it without copying the weights.
// External data is resolved relative to the file's directory and read the
// same way when first used. The model owns its memory: rewriting or
// truncating the files afterwards does not affect it, which makes Load the
// right choice for a server. Call Close once the model and every tensor
// made from it are no longer used.
func Load(path string) (*File, error) { return load(path, false) }

// LoadMapped is Load with the model file and its external data files
// memory-mapped where the platform allows (falling back to reading them):
// it avoids a copy, which saves time and memory on large models, but the
// files must not be truncated or rewritten in place while the File is in
// use, or the process dies of SIGBUS (replacing them by renaming a new file
// over them is safe). Use it for short-lived tools, not for serving files
// that may change.
func LoadMapped(path string) (*File, error) { return load(path, true) }

func load(path string, mmap bool) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	read := readFile
	if mmap {
		read = mapFile
	}
	m, err := read(fd)
	fd.Close()
	if err != nil {
		return nil, fmt.Errorf("onnx: read %s: %w", path, err)
	}
	if len(m.data) == 0 {
		m.close()
		return nil, fmt.Errorf("%w: %s is empty", ErrMalformed, path)
	}
	f, err := LoadBytes(m.data, filepath.Dir(path))
	if err != nil {
		m.close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.release, f.mapped, f.mmap = m.release, m.mapped(), mmap
	return f, nil
}

// LoadBytes decodes the serialized model b, resolving external data relative
// to dir (which may be "" for a model without external data). The model
// shares b's memory: b must stay unchanged while it is used. Close releases
// the external data files the File mapped; b itself is left alone.
func LoadBytes(b []byte, dir string) (*File, error) {
	m, err := DecodeModel(b)
	if err != nil {
		return nil, err
	}
	return &File{Model: m, Dir: dir, data: b}, nil
}

// Bytes returns the serialized model. The memory is the File's and must not
// be modified or used after Close.
func (f *File) Bytes() []byte { return f.data }

// Mapped reports whether the model file is memory-mapped (rather than read
// into memory).
func (f *File) Mapped() bool { return f.mapped }

// Close releases the memory behind the model and its external data. Bytes
// fields of f.Model, and tensors that share their memory, must not be used
// afterwards (copy what must outlive the File, e.g. with Tensor.Clone).
// Close is idempotent.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.Model = nil
	var errs []error
	for _, m := range f.ext {
		errs = append(errs, m.close())
	}
	f.ext = nil
	if f.release != nil {
		errs = append(errs, f.release())
		f.release = nil
	}
	f.data = nil
	return errors.Join(errs...)
}

// ExternalData returns length bytes at offset of the file at location,
// relative to f.Dir; a negative length means up to the end of the file. It
// implements ExternalResolver. Each file is read (mapped, for a File from
// LoadMapped) once and kept until Close. A location that is absolute or leaves f.Dir (through ".." or a
// symbolic link) is refused, as is a range outside the file; errors wrap
// ErrExternalData.
func (f *File) ExternalData(location string, offset, length int64) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("%w: %q: file closed", ErrExternalData, location)
	}
	if f.Dir == "" {
		return nil, fmt.Errorf("%w: %q: the model has no directory (use Load or LoadBytes with a dir)", ErrExternalData, location)
	}
	name := filepath.FromSlash(location)
	if !filepath.IsLocal(name) {
		return nil, fmt.Errorf("%w: location %q is not a path inside the model directory", ErrExternalData, location)
	}
	name = filepath.Clean(name)
	m, ok := f.ext[name]
	if !ok {
		fd, err := os.OpenInRoot(f.Dir, name)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrExternalData, err)
		}
		read := readFile
		if f.mmap {
			read = mapFile
		}
		m, err = read(fd)
		fd.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: read %q: %v", ErrExternalData, location, err)
		}
		if f.ext == nil {
			f.ext = make(map[string]*mapping)
		}
		f.ext[name] = m
	}
	size := int64(len(m.data))
	if offset < 0 || offset > size {
		return nil, fmt.Errorf("%w: %q: offset %d outside the file (%d bytes)", ErrExternalData, location, offset, size)
	}
	if length < 0 {
		length = size - offset
	}
	if length > size-offset {
		return nil, fmt.Errorf("%w: %q: %d bytes at offset %d run past the end of the file (%d bytes)", ErrExternalData, location, length, offset, size)
	}
	return m.data[offset : offset+length : offset+length], nil
}

func (m *mapping) close() error {
	if m.release == nil {
		return nil
	}
	err := m.release()
	m.release, m.data = nil, nil
	return err
}

func (m *mapping) mapped() bool { return m.release != nil }
