package cuda

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

// CUBLASLt is the cuBLASLt library.
type CUBLASLt struct {
	lib *library
	fn  struct{ version, create, destroy, statusName, statusString unsafe.Pointer }

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
func (b *CUBLASLt) Version() int { return int(C.kiln_getVersion(b.fn.version)) }

// Path returns the file libcublasLt was opened from.
func (b *CUBLASLt) Path() string { return b.lib.path }

func (b *CUBLASLt) err(call string, r C.int) error {
	e := &Error{Call: call, Code: int(r), OOM: r == 3} // CUBLAS_STATUS_ALLOC_FAILED
	if b.fn.statusName != nil {
		e.Name = C.GoString(C.kiln_statusString(b.fn.statusName, r))
	}
	if b.fn.statusString != nil {
		e.Msg = C.GoString(C.kiln_statusString(b.fn.statusString, r))
	}
	return e
}

// CUBLASLtHandle is a cuBLASLt handle (cublasLtHandle_t).
type CUBLASLtHandle struct{ p unsafe.Pointer }

// Create makes a handle; it needs a current CUDA context.
func (b *CUBLASLt) Create() (CUBLASLtHandle, error) {
	var h unsafe.Pointer
	if r := C.kiln_createHandle(b.fn.create, &h); r != 0 {
		return CUBLASLtHandle{}, b.err("cublasLtCreate", r)
	}
	return CUBLASLtHandle{h}, nil
}

// Destroy releases h.
func (b *CUBLASLt) Destroy(h CUBLASLtHandle) error {
	if r := C.kiln_destroyHandle(b.fn.destroy, h.p); r != 0 {
		return b.err("cublasLtDestroy", r)
	}
	return nil
}

// CUDNN is the cuDNN library (version 9).
type CUDNN struct {
	lib *library
	fn  struct{ version, create, destroy, errorString unsafe.Pointer }

	convOnce sync.Once
	convFn   *convFn
	convErr  error
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
func (d *CUDNN) Version() int { return int(C.kiln_getVersion(d.fn.version)) }

// Path returns the file libcudnn was opened from.
func (d *CUDNN) Path() string { return d.lib.path }

func (d *CUDNN) err(call string, r C.int) error {
	return &Error{Call: call, Code: int(r), Name: C.GoString(C.kiln_statusString(d.fn.errorString, r)),
		OOM: r == 2000} // CUDNN_STATUS_ALLOC_FAILED
}

// CUDNNHandle is a cuDNN handle (cudnnHandle_t).
type CUDNNHandle struct{ p unsafe.Pointer }

// Create makes a handle; it needs a current CUDA context.
func (d *CUDNN) Create() (CUDNNHandle, error) {
	var h unsafe.Pointer
	if r := C.kiln_createHandle(d.fn.create, &h); r != 0 {
		return CUDNNHandle{}, d.err("cudnnCreate", r)
	}
	return CUDNNHandle{h}, nil
}

// Destroy releases h.
func (d *CUDNN) Destroy(h CUDNNHandle) error {
	if r := C.kiln_destroyHandle(d.fn.destroy, h.p); r != 0 {
		return d.err("cudnnDestroy", r)
	}
	return nil
}

// NVML is the NVIDIA management library, initialized.
type NVML struct {
	lib *library
	fn  struct {
		init, shutdown, errorString, handle, util, mem, driverVersion unsafe.Pointer
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
	if r := C.kiln_nvmlCall0(f.init); r != 0 {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, m.err("nvmlInit_v2", r))
	}
	return m, nil
}

func (m *NVML) err(call string, r C.int) error {
	return &Error{Call: call, Code: int(r), Name: C.GoString(C.kiln_nvmlErrorString(m.fn.errorString, r)),
		OOM: r == 20} // NVML_ERROR_MEMORY
}

// Shutdown calls nvmlShutdown.
func (m *NVML) Shutdown() error {
	if r := C.kiln_nvmlCall0(m.fn.shutdown); r != 0 {
		return m.err("nvmlShutdown", r)
	}
	return nil
}

// DriverVersion returns the driver's release, e.g. "580.159.04".
func (m *NVML) DriverVersion() (string, error) {
	var buf [96]C.char
	if r := C.kiln_nvmlSystemGetDriverVersion(m.fn.driverVersion, &buf[0], C.uint(len(buf))); r != 0 {
		return "", m.err("nvmlSystemGetDriverVersion", r)
	}
	return C.GoString(&buf[0]), nil
}

// Device returns the handle of the device with the given index.
func (m *NVML) Device(i int) (NVMLDevice, error) {
	var p unsafe.Pointer
	if r := C.kiln_nvmlDeviceGetHandleByIndex(m.fn.handle, C.uint(i), &p); r != 0 {
		return NVMLDevice{}, m.err("nvmlDeviceGetHandleByIndex_v2", r)
	}
	return NVMLDevice{p}, nil
}

// Utilization returns the percentages of time the GPU and its memory were busy.
func (m *NVML) Utilization(d NVMLDevice) (gpu, memory int, err error) {
	var g, mm C.uint
	if r := C.kiln_nvmlDeviceGetUtilizationRates(m.fn.util, d.p, &g, &mm); r != 0 {
		return 0, 0, m.err("nvmlDeviceGetUtilizationRates", r)
	}
	return int(g), int(mm), nil
}

// Memory returns the device's memory use.
func (m *NVML) Memory(d NVMLDevice) (MemoryInfo, error) {
	var t, f, u C.ulonglong
	if r := C.kiln_nvmlDeviceGetMemoryInfo(m.fn.mem, d.p, &t, &f, &u); r != 0 {
		return MemoryInfo{}, m.err("nvmlDeviceGetMemoryInfo", r)
	}
	return MemoryInfo{Total: uint64(t), Free: uint64(f), Used: uint64(u)}, nil
}
