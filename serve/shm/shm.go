package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
)

var (
	// ErrNotFound is returned for a region name that is not registered.
	ErrNotFound = errors.New("shm: region not found")
	// ErrExists is returned when registering a name already registered.
	ErrExists = errors.New("shm: region already registered")
	// ErrInvalid is returned for a bad key, offset or size.
	ErrInvalid = errors.New("shm: invalid region")
	// ErrFault is returned when the shared memory object no longer backs a
	// region's bytes (it was truncated after registration).
	ErrFault = errors.New("shm: shared memory object shrank under its region")
)

// DefaultDir is where POSIX shared memory objects live on Linux.
const DefaultDir = "/dev/shm"

// Region is a registered region, as the status request shows it.
type Region struct {
	Name string
	// Key is the shared memory object's name, as given to shm_open
	// ("/input_data").
	Key string
	// Offset is where the region starts in the object; ByteSize its size.
	Offset, ByteSize uint64
}

type region struct {
	Region
	// mu is held for reading while a request copies from or to the
	// mapping, and for writing while it is unmapped.
	mu sync.RWMutex
	// mapping is the whole mmap, starting at the page below Offset; data
	// is the region's bytes within it.
	mapping, data []byte
}

// Registry is a set of registered regions. Its methods are safe for
// concurrent use.
type Registry struct {
	// Dir is the folder of shared memory objects (DefaultDir when empty).
	Dir     string
	mu      sync.Mutex
	regions map[string]*region
}

// NewRegistry returns an empty registry of the objects under DefaultDir.
func NewRegistry() *Registry { return &Registry{Dir: DefaultDir} }

// path returns the file of the object a key names: shm_open's key is one
// name, with an optional leading slash.
func (r *Registry) path(key string) (string, error) {
	name := strings.TrimLeft(key, "/")
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("%w: key %q: want the name of a shared memory object, such as \"/input_data\"", ErrInvalid, key)
	}
	dir := r.Dir
	if dir == "" {
		dir = DefaultDir
	}
	return filepath.Join(dir, name), nil
}

// Register maps ByteSize bytes of the object key from offset as region
// name. The object must exist (the client creates it) and hold the whole
// region.
func (r *Registry) Register(name, key string, offset, byteSize uint64) error {
	if name == "" {
		return fmt.Errorf("%w: a region needs a name", ErrInvalid)
	}
	if byteSize == 0 {
		return fmt.Errorf("%w: region %q: byte_size must be positive", ErrInvalid, name)
	}
	p, err := r.path(key)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.regions[name]; ok {
		return fmt.Errorf("%w: %q (unregister it first)", ErrExists, name)
	}
	m, data, err := mapRegion(p, name, key, offset, byteSize)
	if err != nil {
		return err
	}
	if r.regions == nil {
		r.regions = map[string]*region{}
	}
	r.regions[name] = &region{Region: Region{Name: name, Key: key, Offset: offset, ByteSize: byteSize},
		mapping: m, data: data}
	return nil
}

// Unregister unmaps region name, or every region when name is empty,
// once the requests copying from or to it are done. As Triton's, it does
// nothing for a name that is not registered.
func (r *Registry) Unregister(name string) error {
	r.mu.Lock()
	var gone []*region
	if name == "" {
		for _, g := range r.regions {
			gone = append(gone, g)
		}
		r.regions = nil
	} else {
		if g, ok := r.regions[name]; ok {
			delete(r.regions, name)
			gone = append(gone, g)
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, g := range gone {
		g.mu.Lock()
		errs = append(errs, unmap(g.mapping))
		g.mapping, g.data = nil, nil
		g.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Close unregisters every region.
func (r *Registry) Close() error { return r.Unregister("") }

// Status returns region name, or every region (sorted by name) when name
// is empty.
func (r *Registry) Status(name string) ([]Region, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name != "" {
		g, ok := r.regions[name]
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		return []Region{g.Region}, nil
	}
	out := make([]Region, 0, len(r.regions))
	for _, g := range r.regions {
		out = append(out, g.Region)
	}
	slices.SortFunc(out, func(a, b Region) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// get returns region name with its lock held for reading, after checking
// that offset+size lies within it.
func (r *Registry) get(name string, offset, size uint64) (*region, error) {
	r.mu.Lock()
	g, ok := r.regions[name]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if offset > g.ByteSize || size > g.ByteSize-offset {
		return nil, fmt.Errorf("%w: offset %d + byte size %d is past the end of region %q (%d bytes)", ErrInvalid, offset, size, name, g.ByteSize)
	}
	g.mu.RLock()
	if g.data == nil { // unregistered meanwhile
		g.mu.RUnlock()
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return g, nil
}

// Check checks that region name is registered and holds offset+size.
func (r *Registry) Check(name string, offset, size uint64) error {
	g, err := r.get(name, offset, size)
	if err != nil {
		return err
	}
	g.mu.RUnlock()
	return nil
}

// Read returns a copy of size bytes of region name from offset.
func (r *Registry) Read(name string, offset, size uint64) ([]byte, error) {
	if err := r.Check(name, offset, size); err != nil {
		return nil, err
	}
	out := make([]byte, size)
	return out, r.ReadInto(name, offset, out)
}

// ReadInto copies len(dst) bytes of region name from offset into dst.
func (r *Registry) ReadInto(name string, offset uint64, dst []byte) error {
	g, err := r.get(name, offset, uint64(len(dst)))
	if err != nil {
		return err
	}
	defer g.mu.RUnlock()
	if err := faultless(func() { copy(dst, g.data[offset:offset+uint64(len(dst))]) }); err != nil {
		return fmt.Errorf("region %q: %w", name, err)
	}
	return nil
}

// Write copies data into region name from offset; offset+len(data) must
// lie within the region.
func (r *Registry) Write(name string, offset uint64, data []byte) error {
	g, err := r.get(name, offset, uint64(len(data)))
	if err != nil {
		return err
	}
	defer g.mu.RUnlock()
	if err := faultless(func() { copy(g.data[offset:], data) }); err != nil {
		return fmt.Errorf("region %q: %w", name, err)
	}
	return nil
}

// faultless runs f, turning a memory fault in it (SIGBUS on a page no
// longer backed by the object) into ErrFault.
func faultless(f func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if p := recover(); p != nil {
			if re, ok := p.(interface{ Addr() uintptr }); ok && re != nil {
				err = ErrFault
				return
			}
			panic(p)
		}
	}()
	f()
	return nil
}

// Create creates (or truncates) the shared memory object key with size
// zero bytes under dir (DefaultDir when empty), as a client's shm_open and
// ftruncate do, and returns its file.
func Create(dir, key string, size int64) (string, error) {
	p, err := (&Registry{Dir: dir}).path(key)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return "", err
	}
	return p, f.Close()
}
