package serve

import (
	"errors"
	"fmt"
	"math"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/serve/shm"
	"github.com/kilnai/kiln/tensor"
)

// ShmRef places a tensor in a registered system or CUDA shared memory
// region (the parameters shared_memory_region, shared_memory_offset and
// shared_memory_byte_size of an input or output).
type ShmRef struct {
	Region string
	// Offset is from the start of the region; ByteSize is the input's size,
	// or the room given to an output.
	Offset, ByteSize uint64
}

// ShmParams are the names of the parameters that place an input or output
// in shared memory.
var ShmParams = [3]string{"shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"}

// ShmRegion is a registered system shared memory region.
type ShmRegion = shm.Region

// CudaShmRegion is a registered CUDA shared memory region.
type CudaShmRegion = shm.CudaRegion

// ShmRegions are the registered regions of one kind of shared memory, as
// inference requests read inputs from them and write outputs into them.
// Check, ReadInto and Write fail with an error wrapping shm.ErrNotFound
// for a region not registered, and shm.ErrInvalid for bytes outside it.
type ShmRegions interface {
	Check(name string, offset, size uint64) error
	ReadInto(name string, offset uint64, dst []byte) error
	Write(name string, offset uint64, data []byte) error
}

// CudaShm keeps the CUDA shared memory regions of Triton's
// cudasharedmemory extension; package serve/cudashm provides kiln serve's.
// Its errors wrap the sentinels of package shm.
type CudaShm interface {
	ShmRegions
	// Register opens the device allocation that rawHandle (a
	// cudaIpcMemHandle_t) names on GPU deviceID as region name.
	Register(name string, rawHandle []byte, deviceID int64, byteSize uint64) error
	// Unregister closes region name, or all of them when name is empty.
	Unregister(name string) error
	// Status returns region name, or all of them when name is empty.
	Status(name string) ([]shm.CudaRegion, error)
	// Has reports whether region name is registered.
	Has(name string) bool
	// Close unregisters every region.
	Close() error
}

// regions returns the registry of region name: CUDA or system shared
// memory, whose names are one namespace (as Triton's).
func (s *Server) regions(name string) ShmRegions {
	if c := s.opts.CudaShm; c != nil && c.Has(name) {
		return c
	}
	return s.shm
}

// shmError wraps the errors of package shm in the server's sentinels.
func shmError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, shm.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, shm.ErrNoCUDA):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	case errors.Is(err, shm.ErrExists), errors.Is(err, shm.ErrInvalid), errors.Is(err, shm.ErrFault):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// shmRequestError wraps the errors of package shm met by an inference
// request: a region it names that is not registered is a bad request.
func shmRequestError(err error) error {
	if errors.Is(err, shm.ErrNotFound) {
		return fmt.Errorf("%w: %w (register it first)", ErrInvalid, err)
	}
	return shmError(err)
}

// RegisterSystemShm registers byteSize bytes from offset of the POSIX
// shared memory object key (shm_open's name, a file under /dev/shm) as
// region name.
func (s *Server) RegisterSystemShm(name, key string, offset, byteSize uint64) error {
	s.shmMu.Lock()
	defer s.shmMu.Unlock()
	if c := s.opts.CudaShm; c != nil && c.Has(name) {
		return shmError(fmt.Errorf("%w: %q is a CUDA shared memory region (unregister it first)", shm.ErrExists, name))
	}
	if err := s.shm.Register(name, key, offset, byteSize); err != nil {
		return shmError(err)
	}
	s.log.Info("system shared memory region registered", "region", name, "key", key, "offset", offset, "byte_size", byteSize)
	return nil
}

// UnregisterSystemShm unregisters region name, or every region when name
// is empty; an unknown name is no error (as Triton's).
func (s *Server) UnregisterSystemShm(name string) error {
	return shmError(s.shm.Unregister(name))
}

// SystemShmStatus returns region name, or every region when name is empty.
func (s *Server) SystemShmStatus(name string) ([]ShmRegion, error) {
	rs, err := s.shm.Status(name)
	return rs, shmError(err)
}

// RegisterCudaShm registers the device allocation that rawHandle (the
// 64-byte cudaIpcMemHandle_t of a client's allocation) names on GPU
// deviceID, its first byteSize bytes, as region name. Without
// Options.CudaShm it fails with ErrNoCudaShm.
func (s *Server) RegisterCudaShm(name string, rawHandle []byte, deviceID int64, byteSize uint64) error {
	c := s.opts.CudaShm
	if c == nil {
		return ErrNoCudaShm
	}
	s.shmMu.Lock()
	defer s.shmMu.Unlock()
	if _, err := s.shm.Status(name); err == nil && name != "" {
		return shmError(fmt.Errorf("%w: %q is a system shared memory region (unregister it first)", shm.ErrExists, name))
	}
	if err := c.Register(name, rawHandle, deviceID, byteSize); err != nil {
		return shmError(err)
	}
	s.log.Info("CUDA shared memory region registered", "region", name, "device_id", deviceID, "byte_size", byteSize)
	return nil
}

// UnregisterCudaShm unregisters CUDA region name, or every CUDA region
// when name is empty; an unknown name is no error (as Triton's).
func (s *Server) UnregisterCudaShm(name string) error {
	if s.opts.CudaShm == nil {
		return nil
	}
	return shmError(s.opts.CudaShm.Unregister(name))
}

// CudaShmStatus returns CUDA region name, or every CUDA region when name
// is empty.
func (s *Server) CudaShmStatus(name string) ([]CudaShmRegion, error) {
	if s.opts.CudaShm == nil {
		if name != "" {
			return nil, fmt.Errorf("%w: CUDA shared memory region %q", ErrNotFound, name)
		}
		return nil, nil
	}
	rs, err := s.opts.CudaShm.Status(name)
	return rs, shmError(err)
}

// ErrNoCudaShm is the answer to a CUDA shared memory registration on a
// server without CUDA shared memory (Options.CudaShm nil).
var ErrNoCudaShm = fmt.Errorf("%w: CUDA shared memory is not supported by this server (it has no CUDA shared memory registry); register a system shared memory region instead", ErrUnsupported)

// ShmInput returns the tensor of an input (its datatype and shape as the
// request declares them) read from system or CUDA shared memory. The bytes
// are copied: the client may reuse the region once the response is sent,
// and a batch copies its requests anyway.
func (s *Server) ShmInput(name string, dt tensor.DType, shape []int, ref ShmRef) (*tensor.Tensor, error) {
	n := 1
	for _, d := range shape {
		if d < 0 || d > 0 && n > math.MaxInt/d {
			return nil, fmt.Errorf("%w: input %q: bad shape %v", ErrInvalid, name, shape)
		}
		n *= d
	}
	if dt != tensor.String {
		if sz := dt.Size(); sz <= 0 || n > math.MaxInt/sz || uint64(n*sz) != ref.ByteSize {
			return nil, fmt.Errorf("%w: input %q: shared_memory_byte_size %d, shape %v of %v needs %d bytes", ErrInvalid, name, ref.ByteSize, shape, dt, n*max(sz, 0))
		}
	}
	regions := s.regions(ref.Region)
	if err := regions.Check(ref.Region, ref.Offset, ref.ByteSize); err != nil {
		return nil, fmt.Errorf("input %q: %w", name, shmRequestError(err))
	}
	b := tensor.AlignedBytes(int(ref.ByteSize)) // as every tensor's
	if err := regions.ReadInto(ref.Region, ref.Offset, b); err != nil {
		return nil, fmt.Errorf("input %q: %w", name, shmRequestError(err))
	}
	if dt != tensor.String {
		if dt == tensor.Bool {
			for i, c := range b {
				if c > 1 {
					return nil, fmt.Errorf("%w: input %q: BOOL element %d is byte %d, not 0 or 1", ErrInvalid, name, i, c)
				}
			}
		}
		return &tensor.Tensor{DType: dt, Shape: shape, Data: b}, nil
	}
	dtn, _ := api.Datatype(dt)
	t, err := api.DecodeRaw(dtn, api.WireShape(shape), b)
	if err != nil {
		return nil, fmt.Errorf("%w: input %q: %w", ErrInvalid, name, err)
	}
	return t, nil
}

// checkShmOutputs checks, before the request runs, that the regions its
// outputs go to are registered and hold the room asked for.
func (s *Server) checkShmOutputs(req *InferRequest) error {
	for name, ref := range req.OutputShm {
		if _, ok := req.Classes[name]; ok {
			return fmt.Errorf("%w: output %q: classification and shared memory go separately", ErrInvalid, name)
		}
		if err := s.regions(ref.Region).Check(ref.Region, ref.Offset, ref.ByteSize); err != nil {
			return fmt.Errorf("output %q: %w", name, shmRequestError(err))
		}
	}
	return nil
}

// writeShmOutputs writes the outputs placed in shared memory into their
// regions; each such output's Shm tells where, ByteSize the bytes written.
func (s *Server) writeShmOutputs(resp *InferResponse, req *InferRequest) error {
	for i, o := range resp.Outputs {
		ref, ok := req.OutputShm[o.Name]
		if !ok {
			continue
		}
		b, err := api.EncodeRaw(o.Tensor)
		if err != nil {
			return fmt.Errorf("output %q: %w", o.Name, err)
		}
		if uint64(len(b)) > ref.ByteSize {
			return fmt.Errorf("%w: output %q: shared_memory_byte_size %d is too small for the output's %d bytes (shape %v)", ErrInvalid, o.Name, ref.ByteSize, len(b), o.Tensor.Shape)
		}
		if err := s.regions(ref.Region).Write(ref.Region, ref.Offset, b); err != nil {
			return fmt.Errorf("output %q: %w", o.Name, shmRequestError(err))
		}
		ref.ByteSize = uint64(len(b))
		resp.Outputs[i].Shm = &ref
	}
	return nil
}
