package cuda

import (
	"fmt"
	"structs"
	"sync"
	"unsafe"
)

// CUBLASLt is the cuBLASLt library.
type CUBLASLt struct {
	lib *library
	fn  struct{ version, create, destroy, statusName, statusString uintptr }

	mmOnce sync.Once
	mmFn   *matmulFn
	mmErr  error
}

// OpenCUBLASLt opens libcublasLt (13, 12 or 11).
func OpenCUBLASLt(o Options) (*CUBLASLt, error) {
	lib, err := openLibrary("libcublasLt", libCUBLASLt, o)
	if err != nil {
		return nil, err
	}
	b := &CUBLASLt{lib: lib}
	f := &b.fn
	if err := lib.symbols([]symbol{
		sym(&f.version, "cublasLtGetVersion"),
		sym(&f.create, "cublasLtCreate"),
		sym(&f.destroy, "cublasLtDestroy"),
	}); err != nil {
		lib.close()
		return nil, err
	}
	// Status names appeared in CUDA 11.4: optional.
	f.statusName, _ = lib.sym("cublasLtGetStatusName")
	f.statusString, _ = lib.sym("cublasLtGetStatusString")
	return b, nil
}

// Version returns cuBLASLt's version, e.g. 130100.
func (b *CUBLASLt) Version() int { return int(callPtr(b.fn.version)) }

// Path returns the file libcublasLt was opened from.
func (b *CUBLASLt) Path() string { return b.lib.path }

func (b *CUBLASLt) err(fn string, r int32) error {
	e := &Error{Call: fn, Code: int(r), OOM: r == 3} // CUBLAS_STATUS_ALLOC_FAILED
	if b.fn.statusName != 0 {
		e.Name = goString(callPtr(b.fn.statusName, uintptr(r)))
	}
	if b.fn.statusString != 0 {
		e.Msg = goString(callPtr(b.fn.statusString, uintptr(r)))
	}
	return e
}

// CUBLASLtHandle is a cuBLASLt handle (cublasLtHandle_t).
type CUBLASLtHandle struct{ p unsafe.Pointer }

// Create makes a handle; it needs a current CUDA context.
func (b *CUBLASLt) Create() (CUBLASLtHandle, error) {
	var h unsafe.Pointer
	if r := call(b.fn.create, uintptr(unsafe.Pointer(&h))); r != 0 {
		return CUBLASLtHandle{}, b.err("cublasLtCreate", r)
	}
	return CUBLASLtHandle{h}, nil
}

// Destroy releases h.
func (b *CUBLASLt) Destroy(h CUBLASLtHandle) error {
	if r := call(b.fn.destroy, uintptr(h.p)); r != 0 {
		return b.err("cublasLtDestroy", r)
	}
	return nil
}

// CUDNN is the cuDNN library (version 9).
type CUDNN struct {
	lib *library
	fn  struct{ version, create, destroy, errorString uintptr }

	convOnce sync.Once
	convFn   *convFn
	convErr  error

	fusedOnce sync.Once
	fusedFn   *fusedFn
	fusedErr  error
}

// OpenCUDNN opens libcudnn.so.9.
func OpenCUDNN(o Options) (*CUDNN, error) {
	lib, err := openLibrary("libcudnn", libCUDNN, o)
	if err != nil {
		return nil, err
	}
	d := &CUDNN{lib: lib}
	f := &d.fn
	if err := lib.symbols([]symbol{
		sym(&f.version, "cudnnGetVersion"),
		sym(&f.create, "cudnnCreate"),
		sym(&f.destroy, "cudnnDestroy"),
		sym(&f.errorString, "cudnnGetErrorString"),
	}); err != nil {
		lib.close()
		return nil, err
	}
	return d, nil
}

// Version returns cuDNN's version, e.g. 91400 for 9.14.
func (d *CUDNN) Version() int { return int(callPtr(d.fn.version)) }

// Path returns the file libcudnn was opened from.
func (d *CUDNN) Path() string { return d.lib.path }

func (d *CUDNN) err(fn string, r int32) error {
	return &Error{Call: fn, Code: int(r), Name: goString(callPtr(d.fn.errorString, uintptr(r))),
		OOM: r == 2000} // CUDNN_STATUS_ALLOC_FAILED
}

// CUDNNHandle is a cuDNN handle (cudnnHandle_t).
type CUDNNHandle struct{ p unsafe.Pointer }

// Create makes a handle; it needs a current CUDA context.
func (d *CUDNN) Create() (CUDNNHandle, error) {
	var h unsafe.Pointer
	if r := call(d.fn.create, uintptr(unsafe.Pointer(&h))); r != 0 {
		return CUDNNHandle{}, d.err("cudnnCreate", r)
	}
	return CUDNNHandle{h}, nil
}

// Destroy releases h.
func (d *CUDNN) Destroy(h CUDNNHandle) error {
	if r := call(d.fn.destroy, uintptr(h.p)); r != 0 {
		return d.err("cudnnDestroy", r)
	}
	return nil
}

// NVML is the NVIDIA management library, initialized.
type NVML struct {
	lib *library
	fn  struct {
		init, shutdown, errorString, handle, util, mem, driverVersion uintptr
		// uuid is optional (0 when the library lacks it)
		uuid uintptr
	}
}

// NVMLDevice is a device handle of NVML.
type NVMLDevice struct{ p unsafe.Pointer }

// MemoryInfo is a device's memory use in bytes.
type MemoryInfo struct{ Total, Free, Used uint64 }

// OpenNVML opens libnvidia-ml and calls nvmlInit_v2; call Shutdown when done.
func OpenNVML(o Options) (*NVML, error) {
	lib, err := openLibrary("libnvidia-ml", libNVML, o)
	if err != nil {
		return nil, err
	}
	m := &NVML{lib: lib}
	f := &m.fn
	if err := lib.symbols([]symbol{
		sym(&f.init, "nvmlInit_v2"),
		sym(&f.shutdown, "nvmlShutdown"),
		sym(&f.errorString, "nvmlErrorString"),
		sym(&f.handle, "nvmlDeviceGetHandleByIndex_v2"),
		sym(&f.util, "nvmlDeviceGetUtilizationRates"),
		sym(&f.mem, "nvmlDeviceGetMemoryInfo"),
		sym(&f.driverVersion, "nvmlSystemGetDriverVersion"),
	}); err != nil {
		lib.close()
		return nil, err
	}
	f.uuid, _ = lib.sym("nvmlDeviceGetUUID")
	if r := call(f.init); r != 0 {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, m.err("nvmlInit_v2", r))
	}
	return m, nil
}

func (m *NVML) err(fn string, r int32) error {
	return &Error{Call: fn, Code: int(r), Name: goString(callPtr(m.fn.errorString, uintptr(r))),
		OOM: r == 20} // NVML_ERROR_MEMORY
}

// Shutdown calls nvmlShutdown.
func (m *NVML) Shutdown() error {
	if r := call(m.fn.shutdown); r != 0 {
		return m.err("nvmlShutdown", r)
	}
	return nil
}

// DriverVersion returns the driver's release, e.g. "580.159.04".
func (m *NVML) DriverVersion() (string, error) {
	var buf [96]byte
	if r := call(m.fn.driverVersion, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf))); r != 0 {
		return "", m.err("nvmlSystemGetDriverVersion", r)
	}
	return cStringIn(buf[:]), nil
}

// Device returns the handle of the device with the given index.
func (m *NVML) Device(i int) (NVMLDevice, error) {
	var p unsafe.Pointer
	if r := call(m.fn.handle, uintptr(uint32(i)), uintptr(unsafe.Pointer(&p))); r != 0 {
		return NVMLDevice{}, m.err("nvmlDeviceGetHandleByIndex_v2", r)
	}
	return NVMLDevice{p}, nil
}

// UUID returns the device's UUID, e.g. "GPU-5fa8c3f2-...", the gpu_uuid of
// Triton's GPU metrics. A library without nvmlDeviceGetUUID gives an error
// wrapping ErrUnavailable.
func (m *NVML) UUID(d NVMLDevice) (string, error) {
	if m.fn.uuid == 0 {
		return "", fmt.Errorf("%w: libnvidia-ml has no nvmlDeviceGetUUID", ErrUnavailable)
	}
	var buf [96]byte // NVML_DEVICE_UUID_V2_BUFFER_SIZE is 96
	if r := call(m.fn.uuid, uintptr(d.p), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf))); r != 0 {
		return "", m.err("nvmlDeviceGetUUID", r)
	}
	return cStringIn(buf[:]), nil
}

// Utilization returns the percentages of time the GPU and its memory were busy.
func (m *NVML) Utilization(d NVMLDevice) (gpu, memory int, err error) {
	var u nvmlUtilization
	if r := call(m.fn.util, uintptr(d.p), uintptr(unsafe.Pointer(&u))); r != 0 {
		return 0, 0, m.err("nvmlDeviceGetUtilizationRates", r)
	}
	return int(u.gpu), int(u.memory), nil
}

// Memory returns the device's memory use.
func (m *NVML) Memory(d NVMLDevice) (MemoryInfo, error) {
	var mi nvmlMemory
	if r := call(m.fn.mem, uintptr(d.p), uintptr(unsafe.Pointer(&mi))); r != 0 {
		return MemoryInfo{}, m.err("nvmlDeviceGetMemoryInfo", r)
	}
	return MemoryInfo{Total: mi.total, Free: mi.free, Used: mi.used}, nil
}

// nvmlUtilization is nvmlUtilization_t.
type nvmlUtilization struct {
	_           structs.HostLayout
	gpu, memory uint32
}

// nvmlMemory is nvmlMemory_t.
type nvmlMemory struct {
	_                 structs.HostLayout
	total, free, used uint64
}
