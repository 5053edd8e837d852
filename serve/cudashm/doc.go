// Package cudashm keeps the CUDA shared memory regions of Triton's
// cudasharedmemory extension: a client allocates device memory, exports it
// with cudaIpcGetMemHandle, and registers the 64-byte handle, the device
// and a size by name; inference requests then name the region for inputs
// read from it and outputs written into it, as for system shared memory
// (package serve/shm).
//
// A region is opened (cuIpcOpenMemHandle) in the primary context of its
// device when registered, and closed when unregistered, once the copies in
// flight are done. An input is a device-to-host copy of its bytes, an
// output a host-to-device copy; every access is checked against the
// region's bounds. The CUDA driver is opened at the first registration:
// without one, registering fails with an error wrapping shm.ErrNoCUDA and
// the status lists no region.
package cudashm
