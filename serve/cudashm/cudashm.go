package cudashm

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/serve/shm"
)

// Registry is a set of registered CUDA shared memory regions. Its methods
// are safe for concurrent use.
type Registry struct {
	opts cuda.Options

	open    sync.Once
	drv     *cuda.Driver
	openErr error

	mu      sync.Mutex
	regions map[string]*region
}

type region struct {
	shm.CudaRegion
	dev cuda.Device
	ctx cuda.Context
	// mu is held for reading while a request copies from or to the
	// region, and for writing while it is closed.
	mu sync.RWMutex
	// ptr is the opened allocation's address; 0 once closed.
	ptr cuda.DevicePtr
}

// New returns an empty registry that opens the CUDA driver (as o says) at
// the first registration.
func New(o cuda.Options) *Registry { return &Registry{opts: o} }

// driver opens the CUDA driver once.
func (r *Registry) driver() (*cuda.Driver, error) {
	r.open.Do(func() {
		r.drv, r.openErr = cuda.OpenDriver(r.opts)
		if r.openErr != nil {
			r.openErr = fmt.Errorf("%w: %w", shm.ErrNoCUDA, r.openErr)
		}
	})
	return r.drv, r.openErr
}

// onDevice runs f on a thread where ctx is current.
func (r *Registry) onDevice(ctx cuda.Context, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := r.drv.SetCurrent(ctx); err != nil {
		return err
	}
	return f()
}

// Register opens the device allocation that rawHandle (a
// cudaIpcMemHandle_t of another process) names on GPU deviceID, and
// registers its first byteSize bytes as region name.
func (r *Registry) Register(name string, rawHandle []byte, deviceID int64, byteSize uint64) error {
	if name == "" {
		return fmt.Errorf("%w: a region needs a name", shm.ErrInvalid)
	}
	if len(rawHandle) != shm.HandleSize {
		return fmt.Errorf("%w: region %q: raw_handle is %d bytes, a CUDA IPC handle (cudaIpcMemHandle_t) %d", shm.ErrInvalid, name, len(rawHandle), shm.HandleSize)
	}
	if byteSize == 0 {
		return fmt.Errorf("%w: region %q: byte_size must be positive", shm.ErrInvalid, name)
	}
	drv, err := r.driver()
	if err != nil {
		return fmt.Errorf("region %q: %w", name, err)
	}
	n, err := drv.DeviceCount()
	if err != nil {
		return fmt.Errorf("%w: region %q: %w", shm.ErrNoCUDA, name, err)
	}
	if deviceID < 0 || deviceID >= int64(n) {
		return fmt.Errorf("%w: region %q: device_id %d is out of range: the server has %d CUDA device(s)", shm.ErrInvalid, name, deviceID, n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.regions[name]; ok {
		return fmt.Errorf("%w: %q (unregister it first)", shm.ErrExists, name)
	}
	dev, err := drv.Device(int(deviceID))
	if err != nil {
		return fmt.Errorf("region %q: %w", name, err)
	}
	ctx, err := drv.RetainPrimaryContext(dev)
	if err != nil {
		return fmt.Errorf("region %q: device_id %d: %w", name, deviceID, err)
	}
	g := &region{CudaRegion: shm.CudaRegion{Name: name, DeviceID: int(deviceID), ByteSize: byteSize}, dev: dev, ctx: ctx}
	err = r.onDevice(ctx, func() error {
		p, err := drv.IpcOpenMemHandle(cuda.IpcMemHandle(rawHandle), cuda.IpcLazyEnablePeerAccess)
		if err != nil {
			if errors.Is(err, cuda.ErrUnavailable) {
				return fmt.Errorf("%w: region %q: %w", shm.ErrNoCUDA, name, err)
			}
			return fmt.Errorf("%w: region %q: raw_handle does not open on device %d: %w", shm.ErrInvalid, name, deviceID, err)
		}
		// the size is checked when the driver knows the allocation's
		base, size, err := drv.MemAddressRange(p)
		if err == nil && (p < base || byteSize > size-uint64(p-base)) {
			drv.IpcCloseMemHandle(p)
			return fmt.Errorf("%w: region %q: byte_size %d is larger than the allocation the handle names (%d bytes)", shm.ErrInvalid, name, byteSize, size-min(size, uint64(p-base)))
		}
		g.ptr = p
		return nil
	})
	if err != nil {
		drv.ReleasePrimaryContext(dev)
		return err
	}
	if r.regions == nil {
		r.regions = map[string]*region{}
	}
	r.regions[name] = g
	return nil
}

// Unregister closes region name, or every region when name is empty,
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
	} else if g, ok := r.regions[name]; ok {
		delete(r.regions, name)
		gone = append(gone, g)
	}
	r.mu.Unlock()
	var errs []error
	for _, g := range gone {
		g.mu.Lock()
		errs = append(errs, r.onDevice(g.ctx, func() error { return r.drv.IpcCloseMemHandle(g.ptr) }),
			r.drv.ReleasePrimaryContext(g.dev))
		g.ptr = 0
		g.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Close unregisters every region.
func (r *Registry) Close() error { return r.Unregister("") }

// Status returns region name, or every region (sorted by name) when name
// is empty.
func (r *Registry) Status(name string) ([]shm.CudaRegion, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name != "" {
		g, ok := r.regions[name]
		if !ok {
			return nil, fmt.Errorf("%w: CUDA shared memory region %q", shm.ErrNotFound, name)
		}
		return []shm.CudaRegion{g.CudaRegion}, nil
	}
	out := make([]shm.CudaRegion, 0, len(r.regions))
	for _, g := range r.regions {
		out = append(out, g.CudaRegion)
	}
	slices.SortFunc(out, func(a, b shm.CudaRegion) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Has reports whether region name is registered.
func (r *Registry) Has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.regions[name]
	return ok
}

// get returns region name with its lock held for reading, after checking
// that offset+size lies within it.
func (r *Registry) get(name string, offset, size uint64) (*region, error) {
	r.mu.Lock()
	g, ok := r.regions[name]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", shm.ErrNotFound, name)
	}
	if offset > g.ByteSize || size > g.ByteSize-offset {
		return nil, fmt.Errorf("%w: offset %d + byte size %d is past the end of region %q (%d bytes)", shm.ErrInvalid, offset, size, name, g.ByteSize)
	}
	g.mu.RLock()
	if g.ptr == 0 { // unregistered meanwhile
		g.mu.RUnlock()
		return nil, fmt.Errorf("%w: %q", shm.ErrNotFound, name)
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

// ReadInto copies len(dst) bytes of region name from offset into dst
// (a device-to-host copy).
func (r *Registry) ReadInto(name string, offset uint64, dst []byte) error {
	g, err := r.get(name, offset, uint64(len(dst)))
	if err != nil {
		return err
	}
	defer g.mu.RUnlock()
	if err := r.onDevice(g.ctx, func() error { return r.drv.MemcpyDtoH(dst, g.ptr+cuda.DevicePtr(offset)) }); err != nil {
		return fmt.Errorf("CUDA region %q: %w", name, err)
	}
	return nil
}

// Write copies data into region name from offset (a host-to-device copy);
// offset+len(data) must lie within the region.
func (r *Registry) Write(name string, offset uint64, data []byte) error {
	g, err := r.get(name, offset, uint64(len(data)))
	if err != nil {
		return err
	}
	defer g.mu.RUnlock()
	err = r.onDevice(g.ctx, func() error {
		if err := r.drv.MemcpyHtoD(g.ptr+cuda.DevicePtr(offset), data); err != nil {
			return err
		}
		// A copy from pageable memory may return before its DMA is done:
		// wait for it on the legacy default stream, where it runs (the
		// engines' streams are non-blocking, so this waits for no kernel),
		// for the client to see the bytes once the response is sent.
		return r.drv.StreamSynchronize(cuda.Stream{})
	})
	if err != nil {
		return fmt.Errorf("CUDA region %q: %w", name, err)
	}
	return nil
}
