package shm

import "errors"

// ErrNoCUDA is returned for a CUDA shared memory region when the server
// has no usable CUDA driver or device (package serve/cudashm says which).
var ErrNoCUDA = errors.New("shm: CUDA shared memory needs a CUDA driver and device")

// HandleSize is the size of a CUDA interprocess memory handle
// (cudaIpcMemHandle_t), the raw_handle of a CUDA region's registration.
const HandleSize = 64

// CudaRegion is a registered CUDA shared memory region (Triton's
// cudasharedmemory extension), as the status request shows it: a device
// allocation of the client's, opened from its interprocess handle.
type CudaRegion struct {
	Name string
	// DeviceID is the ordinal of the GPU that holds the allocation.
	DeviceID int
	// ByteSize is the region's size, from the allocation's start.
	ByteSize uint64
}
