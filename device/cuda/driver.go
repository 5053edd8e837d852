package cuda

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"
)

// Device attributes (CUdevice_attribute) used by kiln.
const (
	AttrMultiprocessorCount    = 16
	AttrComputeCapabilityMajor = 75
	AttrComputeCapabilityMinor = 76
)

// Stream capture modes (CUstreamCaptureMode).
const (
	CaptureModeGlobal      = 0
	CaptureModeThreadLocal = 1
	CaptureModeRelaxed     = 2
)

const (
	cudaErrorOutOfMemory = 2 // CUDA_ERROR_OUT_OF_MEMORY
	cudaErrorNoDevice    = 100
)

// Device is a CUDA device ordinal as returned by cuDeviceGet.
type Device int32

// DevicePtr is an address in device memory (CUdeviceptr).
type DevicePtr uint64

// Context is a CUDA context (CUcontext).
type Context struct{ p unsafe.Pointer }

// Stream is a CUDA stream (CUstream); the zero Stream is the default stream.
type Stream struct{ p unsafe.Pointer }

// Event is a CUDA event (CUevent).
type Event struct{ p unsafe.Pointer }

// Module is a loaded CUDA module (CUmodule).
type Module struct{ p unsafe.Pointer }

// Function is a kernel of a loaded module (CUfunction).
type Function struct{ p unsafe.Pointer }

// Graph is a captured CUDA graph (CUgraph).
type Graph struct{ p unsafe.Pointer }

// GraphExec is an instantiated CUDA graph (CUgraphExec).
type GraphExec struct{ p unsafe.Pointer }

// Dim3 is a grid or block size.
type Dim3 struct{ X, Y, Z uint32 }

// HostBuffer is page-locked host memory from MemAllocHost, usable by the
// asynchronous copies.
type HostBuffer struct {
	p unsafe.Pointer
	n int
}

// Bytes returns the buffer's memory as a slice; it is valid until MemFreeHost.
func (h HostBuffer) Bytes() []byte {
	if h.p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(h.p), h.n)
}

// Len returns the size of the buffer in bytes.
func (h HostBuffer) Len() int { return h.n }

// Driver is the CUDA driver API (libcuda), opened and initialized.
type Driver struct {
	lib     *library
	version int
	fn      struct {
		init, driverGetVersion, getErrorName, getErrorString                        uintptr
		deviceGetCount, deviceGet, deviceGetName, deviceGetAttribute, deviceTotal   uintptr
		primaryRetain, primaryRelease, ctxSetCurrent, ctxSynchronize                uintptr
		memAlloc, memFree, htod, dtoh, htodAsync, dtohAsync, allocHost, freeHost    uintptr
		streamCreate, streamSync, streamDestroy                                     uintptr
		eventCreate, eventRecord, eventSync, eventElapsed, eventDestroy             uintptr
		moduleLoadData, moduleUnload, moduleGetFunction, launchKernel               uintptr
		beginCapture, endCapture, graphInstantiate, graphLaunch, graphDestroy, gxDe uintptr
		// deviceGetUUID is optional (0 when the driver lacks it)
		deviceGetUUID uintptr
		// the IPC and address-range functions are optional too (0 when
		// the driver lacks them): only CUDA shared memory uses them
		ipcOpen, ipcClose, ipcGet, addressRange uintptr
		launchKernelEx                          uintptr // optional: LaunchPDL (launchex.go)
	}
}

// OpenDriver opens libcuda, resolves the functions kiln uses and calls
// cuInit. Without a usable driver or device the error wraps ErrUnavailable.
func OpenDriver(o Options) (*Driver, error) {
	lib, err := openLibrary("libcuda", libCUDA, o)
	if err != nil {
		return nil, err
	}
	d := &Driver{lib: lib}
	f := &d.fn
	err = lib.symbols([]symbol{
		sym(&f.init, "cuInit"),
		sym(&f.driverGetVersion, "cuDriverGetVersion"),
		sym(&f.getErrorName, "cuGetErrorName"),
		sym(&f.getErrorString, "cuGetErrorString"),
		sym(&f.deviceGetCount, "cuDeviceGetCount"),
		sym(&f.deviceGet, "cuDeviceGet"),
		sym(&f.deviceGetName, "cuDeviceGetName"),
		sym(&f.deviceGetAttribute, "cuDeviceGetAttribute"),
		sym(&f.deviceTotal, "cuDeviceTotalMem_v2"),
		sym(&f.primaryRetain, "cuDevicePrimaryCtxRetain"),
		sym(&f.primaryRelease, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"),
		sym(&f.ctxSetCurrent, "cuCtxSetCurrent"),
		sym(&f.ctxSynchronize, "cuCtxSynchronize"),
		sym(&f.memAlloc, "cuMemAlloc_v2"),
		sym(&f.memFree, "cuMemFree_v2"),
		sym(&f.htod, "cuMemcpyHtoD_v2"),
		sym(&f.dtoh, "cuMemcpyDtoH_v2"),
		sym(&f.htodAsync, "cuMemcpyHtoDAsync_v2"),
		sym(&f.dtohAsync, "cuMemcpyDtoHAsync_v2"),
		sym(&f.allocHost, "cuMemAllocHost_v2"),
		sym(&f.freeHost, "cuMemFreeHost"),
		sym(&f.streamCreate, "cuStreamCreate"),
		sym(&f.streamSync, "cuStreamSynchronize"),
		sym(&f.streamDestroy, "cuStreamDestroy_v2"),
		sym(&f.eventCreate, "cuEventCreate"),
		sym(&f.eventRecord, "cuEventRecord"),
		sym(&f.eventSync, "cuEventSynchronize"),
		sym(&f.eventElapsed, "cuEventElapsedTime_v2", "cuEventElapsedTime"),
		sym(&f.eventDestroy, "cuEventDestroy_v2"),
		sym(&f.moduleLoadData, "cuModuleLoadData"),
		sym(&f.moduleUnload, "cuModuleUnload"),
		sym(&f.moduleGetFunction, "cuModuleGetFunction"),
		sym(&f.launchKernel, "cuLaunchKernel"),
		sym(&f.beginCapture, "cuStreamBeginCapture_v2"),
		sym(&f.endCapture, "cuStreamEndCapture"),
		sym(&f.graphInstantiate, "cuGraphInstantiateWithFlags"),
		sym(&f.graphLaunch, "cuGraphLaunch"),
		sym(&f.graphDestroy, "cuGraphDestroy"),
		sym(&f.gxDe, "cuGraphExecDestroy"),
	})
	if err != nil {
		lib.close()
		return nil, err
	}
	f.deviceGetUUID, _ = lib.sym("cuDeviceGetUuid_v2", "cuDeviceGetUuid")
	f.ipcOpen, _ = lib.sym("cuIpcOpenMemHandle_v2", "cuIpcOpenMemHandle")
	f.ipcClose, _ = lib.sym("cuIpcCloseMemHandle")
	f.ipcGet, _ = lib.sym("cuIpcGetMemHandle")
	f.addressRange, _ = lib.sym("cuMemGetAddressRange_v2")
	f.launchKernelEx, _ = lib.sym("cuLaunchKernelEx")
	// From here on libcuda stays loaded, even on failure: unloading a
	// driver that has started its threads is not safe.
	if r := call(f.init, 0); r != 0 {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, d.err("cuInit", r))
	}
	var v int32
	if r := call(f.driverGetVersion, uintptr(unsafe.Pointer(&v))); r != 0 {
		return nil, d.err("cuDriverGetVersion", r)
	}
	d.version = int(v)
	return d, nil
}

// Path returns the file libcuda was opened from.
func (d *Driver) Path() string { return d.lib.path }

// Version returns the CUDA version the driver supports, e.g. 13000.
func (d *Driver) Version() int { return d.version }

// err builds the *Error of a failed driver call. It allocates, so it is
// called only on failure.
func (d *Driver) err(fn string, r int32) error {
	e := &Error{Call: fn, Code: int(r), OOM: r == cudaErrorOutOfMemory}
	var s uintptr
	if call(d.fn.getErrorName, uintptr(r), uintptr(unsafe.Pointer(&s))) == 0 && s != 0 {
		e.Name = goString(s)
	}
	s = 0
	if call(d.fn.getErrorString, uintptr(r), uintptr(unsafe.Pointer(&s))) == 0 && s != 0 {
		e.Msg = goString(s)
	}
	return e
}

// DeviceCount returns the number of CUDA devices.
func (d *Driver) DeviceCount() (int, error) {
	var n int32
	if r := call(d.fn.deviceGetCount, uintptr(unsafe.Pointer(&n))); r != 0 {
		return 0, d.err("cuDeviceGetCount", r)
	}
	return int(n), nil
}

// Device returns the device of the given ordinal.
func (d *Driver) Device(ordinal int) (Device, error) {
	var dev int32
	if r := call(d.fn.deviceGet, uintptr(unsafe.Pointer(&dev)), uintptr(ordinal)); r != 0 {
		return 0, d.err("cuDeviceGet", r)
	}
	return Device(dev), nil
}

// DeviceName returns the device's name, e.g. "NVIDIA H100 80GB HBM3".
func (d *Driver) DeviceName(dev Device) (string, error) {
	var buf [256]byte
	if r := call(d.fn.deviceGetName, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(dev)); r != 0 {
		return "", d.err("cuDeviceGetName", r)
	}
	return cStringIn(buf[:]), nil
}

// DeviceUUID returns the device's UUID as NVML and nvidia-smi write it,
// "GPU-" and 32 hexadecimal digits in groups of 8-4-4-4-12: the same GPU
// under any CUDA_VISIBLE_DEVICES, which renumbers the ordinals. A driver
// without cuDeviceGetUuid gives an error wrapping ErrUnavailable.
func (d *Driver) DeviceUUID(dev Device) (string, error) {
	if d.fn.deviceGetUUID == 0 {
		return "", fmt.Errorf("%w: the driver has no cuDeviceGetUuid", ErrUnavailable)
	}
	var b [16]byte
	if r := call(d.fn.deviceGetUUID, uintptr(unsafe.Pointer(&b[0])), uintptr(dev)); r != 0 {
		return "", d.err("cuDeviceGetUuid", r)
	}
	return FormatUUID(b), nil
}

// FormatUUID writes a GPU's 16-byte UUID as NVML does:
// GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
func FormatUUID(b [16]byte) string {
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Attribute returns a device attribute (one of the Attr constants).
func (d *Driver) Attribute(dev Device, attr int) (int, error) {
	var v int32
	if r := call(d.fn.deviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(attr), uintptr(dev)); r != 0 {
		return 0, d.err("cuDeviceGetAttribute", r)
	}
	return int(v), nil
}

// ComputeCapability returns the device's compute capability, e.g. 9, 0.
func (d *Driver) ComputeCapability(dev Device) (major, minor int, err error) {
	if major, err = d.Attribute(dev, AttrComputeCapabilityMajor); err != nil {
		return 0, 0, err
	}
	if minor, err = d.Attribute(dev, AttrComputeCapabilityMinor); err != nil {
		return 0, 0, err
	}
	return major, minor, nil
}

// TotalMem returns the device's memory in bytes.
func (d *Driver) TotalMem(dev Device) (int64, error) {
	var n uintptr // size_t
	if r := call(d.fn.deviceTotal, uintptr(unsafe.Pointer(&n)), uintptr(dev)); r != 0 {
		return 0, d.err("cuDeviceTotalMem", r)
	}
	return int64(n), nil
}

// RetainPrimaryContext retains the device's primary context; release it
// with ReleasePrimaryContext.
func (d *Driver) RetainPrimaryContext(dev Device) (Context, error) {
	var c unsafe.Pointer
	if r := call(d.fn.primaryRetain, uintptr(unsafe.Pointer(&c)), uintptr(dev)); r != 0 {
		return Context{}, d.err("cuDevicePrimaryCtxRetain", r)
	}
	return Context{c}, nil
}

// ReleasePrimaryContext releases the device's primary context.
func (d *Driver) ReleasePrimaryContext(dev Device) error {
	if r := call(d.fn.primaryRelease, uintptr(dev)); r != 0 {
		return d.err("cuDevicePrimaryCtxRelease", r)
	}
	return nil
}

// SetCurrent binds c to the calling OS thread.
func (d *Driver) SetCurrent(c Context) error {
	if r := call(d.fn.ctxSetCurrent, uintptr(c.p)); r != 0 {
		return d.err("cuCtxSetCurrent", r)
	}
	return nil
}

// Synchronize waits for all work of the current context.
func (d *Driver) Synchronize() error {
	if r := call(d.fn.ctxSynchronize); r != 0 {
		return d.err("cuCtxSynchronize", r)
	}
	return nil
}

// MemAlloc allocates n bytes of device memory.
func (d *Driver) MemAlloc(n int) (DevicePtr, error) {
	var p uint64 // CUdeviceptr
	if r := call(d.fn.memAlloc, uintptr(unsafe.Pointer(&p)), uintptr(n)); r != 0 {
		return 0, d.err(fmt.Sprintf("cuMemAlloc(%d bytes)", n), r)
	}
	return DevicePtr(p), nil
}

// MemFree frees device memory from MemAlloc.
func (d *Driver) MemFree(p DevicePtr) error {
	if r := call(d.fn.memFree, uintptr(p)); r != 0 {
		return d.err("cuMemFree", r)
	}
	return nil
}

// MemcpyHtoD copies src to device memory at dst.
func (d *Driver) MemcpyHtoD(dst DevicePtr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	if r := call(d.fn.htod, uintptr(dst), uintptr(unsafe.Pointer(&src[0])), uintptr(len(src))); r != 0 {
		return d.err("cuMemcpyHtoD", r)
	}
	return nil
}

// MemcpyDtoH copies len(dst) bytes of device memory at src to dst.
func (d *Driver) MemcpyDtoH(dst []byte, src DevicePtr) error {
	if len(dst) == 0 {
		return nil
	}
	if r := call(d.fn.dtoh, uintptr(unsafe.Pointer(&dst[0])), uintptr(src), uintptr(len(dst))); r != 0 {
		return d.err("cuMemcpyDtoH", r)
	}
	return nil
}

// MemcpyHtoDAsync queues a copy of the first n bytes of src to dst on s.
func (d *Driver) MemcpyHtoDAsync(dst DevicePtr, src HostBuffer, n int, s Stream) error {
	if n < 0 || n > src.n {
		return &Error{Call: "cuMemcpyHtoDAsync", Code: 1, Name: "CUDA_ERROR_INVALID_VALUE", Msg: fmt.Sprintf("%d bytes from a %d-byte buffer", n, src.n)}
	}
	if r := callC(d.fn.htodAsync, uintptr(dst), uintptr(src.p), uintptr(n), uintptr(s.p)); r != 0 {
		return d.err("cuMemcpyHtoDAsync", r)
	}
	return nil
}

// MemcpyDtoHAsync queues a copy of n bytes at src into dst on s.
func (d *Driver) MemcpyDtoHAsync(dst HostBuffer, src DevicePtr, n int, s Stream) error {
	if n < 0 || n > dst.n {
		return &Error{Call: "cuMemcpyDtoHAsync", Code: 1, Name: "CUDA_ERROR_INVALID_VALUE", Msg: fmt.Sprintf("%d bytes into a %d-byte buffer", n, dst.n)}
	}
	if r := callC(d.fn.dtohAsync, uintptr(dst.p), uintptr(src), uintptr(n), uintptr(s.p)); r != 0 {
		return d.err("cuMemcpyDtoHAsync", r)
	}
	return nil
}

// MemAllocHost allocates n bytes of page-locked host memory.
func (d *Driver) MemAllocHost(n int) (HostBuffer, error) {
	var p unsafe.Pointer
	if r := call(d.fn.allocHost, uintptr(unsafe.Pointer(&p)), uintptr(n)); r != 0 {
		return HostBuffer{}, d.err(fmt.Sprintf("cuMemAllocHost(%d bytes)", n), r)
	}
	return HostBuffer{p: p, n: n}, nil
}

// MemFreeHost frees memory from MemAllocHost.
func (d *Driver) MemFreeHost(h HostBuffer) error {
	if r := call(d.fn.freeHost, uintptr(h.p)); r != 0 {
		return d.err("cuMemFreeHost", r)
	}
	return nil
}

// StreamCreate creates a stream (flags: 0, or 1 for non-blocking).
func (d *Driver) StreamCreate(flags uint32) (Stream, error) {
	var s unsafe.Pointer
	if r := call(d.fn.streamCreate, uintptr(unsafe.Pointer(&s)), uintptr(flags)); r != 0 {
		return Stream{}, d.err("cuStreamCreate", r)
	}
	return Stream{s}, nil
}

// StreamSynchronize waits for the work queued on s.
func (d *Driver) StreamSynchronize(s Stream) error {
	if r := callC(d.fn.streamSync, uintptr(s.p)); r != 0 {
		return d.err("cuStreamSynchronize", r)
	}
	return nil
}

// StreamDestroy destroys s.
func (d *Driver) StreamDestroy(s Stream) error {
	if r := call(d.fn.streamDestroy, uintptr(s.p)); r != 0 {
		return d.err("cuStreamDestroy", r)
	}
	return nil
}

// EventCreate creates an event (flags: 0 for a timing event).
func (d *Driver) EventCreate(flags uint32) (Event, error) {
	var e unsafe.Pointer
	if r := call(d.fn.eventCreate, uintptr(unsafe.Pointer(&e)), uintptr(flags)); r != 0 {
		return Event{}, d.err("cuEventCreate", r)
	}
	return Event{e}, nil
}

// EventRecord records e on s.
func (d *Driver) EventRecord(e Event, s Stream) error {
	if r := callC(d.fn.eventRecord, uintptr(e.p), uintptr(s.p)); r != 0 {
		return d.err("cuEventRecord", r)
	}
	return nil
}

// EventSynchronize waits for e.
func (d *Driver) EventSynchronize(e Event) error {
	if r := call(d.fn.eventSync, uintptr(e.p)); r != 0 {
		return d.err("cuEventSynchronize", r)
	}
	return nil
}

// EventElapsed returns the milliseconds between two recorded events.
func (d *Driver) EventElapsed(start, end Event) (float32, error) {
	var ms float32
	if r := call(d.fn.eventElapsed, uintptr(unsafe.Pointer(&ms)), uintptr(start.p), uintptr(end.p)); r != 0 {
		return 0, d.err("cuEventElapsedTime", r)
	}
	return float32(ms), nil
}

// EventDestroy destroys e.
func (d *Driver) EventDestroy(e Event) error {
	if r := call(d.fn.eventDestroy, uintptr(e.p)); r != 0 {
		return d.err("cuEventDestroy", r)
	}
	return nil
}

// ModuleLoadData loads a cubin or PTX image into the current context.
func (d *Driver) ModuleLoadData(image []byte) (Module, error) {
	if len(image) == 0 {
		return Module{}, &Error{Call: "cuModuleLoadData", Code: 1, Name: "CUDA_ERROR_INVALID_VALUE", Msg: "empty image"}
	}
	// A PTX image must end with a NUL: copy it with one.
	b := make([]byte, len(image)+1)
	copy(b, image)
	var m unsafe.Pointer
	if r := call(d.fn.moduleLoadData, uintptr(unsafe.Pointer(&m)), uintptr(unsafe.Pointer(&b[0]))); r != 0 {
		return Module{}, d.err("cuModuleLoadData", r)
	}
	return Module{m}, nil
}

// ModuleUnload unloads m.
func (d *Driver) ModuleUnload(m Module) error {
	if r := call(d.fn.moduleUnload, uintptr(m.p)); r != 0 {
		return d.err("cuModuleUnload", r)
	}
	return nil
}

// ModuleFunction returns the kernel called name in m.
func (d *Driver) ModuleFunction(m Module, name string) (Function, error) {
	cs := cBytes(name)
	var f unsafe.Pointer
	if r := call(d.fn.moduleGetFunction, uintptr(unsafe.Pointer(&f)), uintptr(m.p), uintptr(unsafe.Pointer(&cs[0]))); r != 0 {
		return Function{}, d.err("cuModuleGetFunction("+name+")", r)
	}
	return Function{f}, nil
}

// Launch queues kernel f on s. It does not allocate.
func (d *Driver) Launch(f Function, grid, block Dim3, sharedMem uint32, s Stream, args *KernelArgs) error {
	var params unsafe.Pointer // void **kernelParams, in C memory
	if args != nil {
		params = args.ptrs
	}
	r := callC(d.fn.launchKernel, uintptr(f.p),
		uintptr(grid.X), uintptr(grid.Y), uintptr(grid.Z),
		uintptr(block.X), uintptr(block.Y), uintptr(block.Z),
		uintptr(sharedMem), uintptr(s.p), uintptr(params), 0)
	if r != 0 {
		return d.err("cuLaunchKernel", r)
	}
	return nil
}

// BeginCapture starts capturing the work queued on s into a graph.
func (d *Driver) BeginCapture(s Stream, mode int) error {
	if r := call(d.fn.beginCapture, uintptr(s.p), uintptr(mode)); r != 0 {
		return d.err("cuStreamBeginCapture", r)
	}
	return nil
}

// EndCapture ends the capture on s and returns the graph.
func (d *Driver) EndCapture(s Stream) (Graph, error) {
	var g unsafe.Pointer
	if r := call(d.fn.endCapture, uintptr(s.p), uintptr(unsafe.Pointer(&g))); r != 0 {
		return Graph{}, d.err("cuStreamEndCapture", r)
	}
	return Graph{g}, nil
}

// GraphInstantiate makes an executable graph of g.
func (d *Driver) GraphInstantiate(g Graph) (GraphExec, error) {
	var e unsafe.Pointer
	if r := call(d.fn.graphInstantiate, uintptr(unsafe.Pointer(&e)), uintptr(g.p), 0); r != 0 {
		return GraphExec{}, d.err("cuGraphInstantiate", r)
	}
	return GraphExec{e}, nil
}

// GraphLaunch queues e on s. It does not allocate.
func (d *Driver) GraphLaunch(e GraphExec, s Stream) error {
	if r := callC(d.fn.graphLaunch, uintptr(e.p), uintptr(s.p)); r != 0 {
		return d.err("cuGraphLaunch", r)
	}
	return nil
}

// GraphDestroy destroys g.
func (d *Driver) GraphDestroy(g Graph) error {
	if r := call(d.fn.graphDestroy, uintptr(g.p)); r != 0 {
		return d.err("cuGraphDestroy", r)
	}
	return nil
}

// GraphExecDestroy destroys e.
func (d *Driver) GraphExecDestroy(e GraphExec) error {
	if r := call(d.fn.gxDe, uintptr(e.p)); r != 0 {
		return d.err("cuGraphExecDestroy", r)
	}
	return nil
}

// KernelArgs holds a kernel's arguments in C memory, so that Launch passes
// them without copying or allocating. Each argument takes an 8-byte slot.
type KernelArgs struct {
	n     int
	slots unsafe.Pointer // n 8-byte values
	ptrs  unsafe.Pointer // n pointers to the slots
}

// NewKernelArgs allocates room for n arguments; free it with Free.
func NewKernelArgs(n int) *KernelArgs {
	if n < 1 {
		n = 1
	}
	a := &KernelArgs{n: n, slots: cMalloc(n * 8), ptrs: cMalloc(n * int(unsafe.Sizeof(uintptr(0))))}
	for i := range n {
		*(*unsafe.Pointer)(unsafe.Add(a.ptrs, i*int(unsafe.Sizeof(uintptr(0))))) = unsafe.Add(a.slots, i*8)
	}
	return a
}

func (a *KernelArgs) slot(i int) unsafe.Pointer {
	if i < 0 || i >= a.n {
		panic(fmt.Sprintf("cuda: kernel argument %d out of range [0,%d)", i, a.n))
	}
	return unsafe.Add(a.slots, i*8)
}

// SetPtr sets argument i to a device pointer.
func (a *KernelArgs) SetPtr(i int, p DevicePtr) { *(*uint64)(a.slot(i)) = uint64(p) }

// SetInt64 sets argument i to a 64-bit integer.
func (a *KernelArgs) SetInt64(i int, v int64) { *(*int64)(a.slot(i)) = v }

// SetInt32 sets argument i to a 32-bit integer.
func (a *KernelArgs) SetInt32(i int, v int32) { *(*int32)(a.slot(i)) = v }

// SetFloat32 sets argument i to a float.
func (a *KernelArgs) SetFloat32(i int, v float32) { *(*float32)(a.slot(i)) = v }

// Free releases the arguments' C memory.
func (a *KernelArgs) Free() {
	if a.slots != nil {
		cFree(a.slots)
		cFree(a.ptrs)
		a.slots, a.ptrs = nil, nil
	}
}

// IpcMemHandle is an interprocess memory handle (CUipcMemHandle, the
// runtime's cudaIpcMemHandle_t): 64 opaque bytes that name a device
// allocation of another process.
type IpcMemHandle [64]byte

// IpcLazyEnablePeerAccess (CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS) is the flag
// of IpcOpenMemHandle that lets a handle of one device be opened in the
// context of another, peer access enabled when first used.
const IpcLazyEnablePeerAccess = 1

// optional returns an error wrapping ErrUnavailable when the driver lacks
// the optional function fn (0).
func (d *Driver) optional(fn uintptr, name string) error {
	if fn == 0 {
		return fmt.Errorf("%w: the driver (%s) has no %s", ErrUnavailable, d.lib.path, name)
	}
	return nil
}

// IpcOpenMemHandle maps the allocation that h names, exported by another
// process with cuIpcGetMemHandle, into the current context and returns its
// address. (A handle cannot be opened in the process that exported it.)
// Close it with IpcCloseMemHandle.
//
// The C function takes the 64-byte handle by value. On linux/amd64 (System
// V ABI) a struct larger than two eightbytes has class MEMORY: it is copied
// onto the stack and takes no register, so the pointer and the flags go in
// the first two integer registers, the other four are unused, and the
// handle's eight eightbytes are the first stack arguments. On linux/arm64
// (AAPCS64) a composite larger than 16 bytes is copied to memory by the
// caller and replaced by a pointer to the copy, passed in the next
// register.
func (d *Driver) IpcOpenMemHandle(h IpcMemHandle, flags uint32) (DevicePtr, error) {
	if err := d.optional(d.fn.ipcOpen, "cuIpcOpenMemHandle"); err != nil {
		return 0, err
	}
	var p uint64 // CUdeviceptr
	var r int32
	switch runtime.GOARCH {
	case "amd64":
		var w [8]uintptr
		for i := range w {
			w[i] = uintptr(binary.LittleEndian.Uint64(h[8*i:]))
		}
		r = call(d.fn.ipcOpen, uintptr(unsafe.Pointer(&p)), uintptr(flags), 0, 0, 0, 0,
			w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7])
	case "arm64":
		c := h // the callee's copy
		r = call(d.fn.ipcOpen, uintptr(unsafe.Pointer(&p)), uintptr(unsafe.Pointer(&c)), uintptr(flags))
	default:
		return 0, fmt.Errorf("%w: cuIpcOpenMemHandle takes a struct by value, which kiln passes on amd64 and arm64 only, not %s", ErrUnavailable, runtime.GOARCH)
	}
	if r != 0 {
		return 0, d.err("cuIpcOpenMemHandle", r)
	}
	return DevicePtr(p), nil
}

// IpcCloseMemHandle unmaps memory from IpcOpenMemHandle.
func (d *Driver) IpcCloseMemHandle(p DevicePtr) error {
	if err := d.optional(d.fn.ipcClose, "cuIpcCloseMemHandle"); err != nil {
		return err
	}
	if r := call(d.fn.ipcClose, uintptr(p)); r != 0 {
		return d.err("cuIpcCloseMemHandle", r)
	}
	return nil
}

// IpcGetMemHandle returns the interprocess handle of the allocation
// (from MemAlloc) that holds p, for another process to open.
func (d *Driver) IpcGetMemHandle(p DevicePtr) (IpcMemHandle, error) {
	var h IpcMemHandle
	if err := d.optional(d.fn.ipcGet, "cuIpcGetMemHandle"); err != nil {
		return h, err
	}
	if r := call(d.fn.ipcGet, uintptr(unsafe.Pointer(&h[0])), uintptr(p)); r != 0 {
		return h, d.err("cuIpcGetMemHandle", r)
	}
	return h, nil
}

// MemAddressRange returns the base and the size in bytes of the
// allocation that holds p.
func (d *Driver) MemAddressRange(p DevicePtr) (base DevicePtr, size uint64, err error) {
	if err := d.optional(d.fn.addressRange, "cuMemGetAddressRange"); err != nil {
		return 0, 0, err
	}
	var b uint64
	var n uintptr // size_t
	if r := call(d.fn.addressRange, uintptr(unsafe.Pointer(&b)), uintptr(unsafe.Pointer(&n)), uintptr(p)); r != 0 {
		return 0, 0, d.err("cuMemGetAddressRange", r)
	}
	return DevicePtr(b), uint64(n), nil
}
