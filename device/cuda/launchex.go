package cuda

import (
	"encoding/binary"
	"unsafe"
)

// cuLaunchKernelEx's configuration (CUlaunchConfig) and its one attribute
// (CUlaunchAttribute), laid out as the driver's headers declare them on
// 64-bit hosts: the config is grid and block dimensions and the shared
// memory (7 uint32), the stream at offset 32, the attributes' address at
// 40 and their count at 48; an attribute is its id (uint32), 4 bytes of
// padding and a 64-byte value.
const (
	launchConfigSize    = 56
	launchAttributeSize = 72
	// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION: the value's
	// first int allows the kernel to start before the one before it in the
	// stream has finished (programmatic dependent launch).
	launchAttrProgrammaticSerialization = 6
	// pdlMinDriver is the first driver (CUDA 12.3) that captures a
	// programmatic dependency into a graph as such.
	pdlMinDriver = 12030
)

// CanLaunchPDL reports whether LaunchPDL can run: the driver has
// cuLaunchKernelEx and captures programmatic dependencies into CUDA graphs
// (CUDA 12.3 and later). The device must be of compute capability 9.0 or
// later for the launch to overlap anything; on others it runs as Launch.
func (d *Driver) CanLaunchPDL() bool {
	return d.fn.launchKernelEx != 0 && d.version >= pdlMinDriver
}

// LaunchPDL queues f on s as Launch does, with programmatic stream
// serialization allowed (programmatic dependent launch): the kernel may
// start while the kernel before it on s finishes, so that its launch
// overlaps that kernel's last blocks. f must wait for the work before it
// (PTX griddepcontrol.wait, a no-op when launched otherwise) before it
// reads or writes memory that work touches.
func (d *Driver) LaunchPDL(f Function, grid, block Dim3, sharedMem uint32, s Stream, args *KernelArgs) error {
	if d.fn.launchKernelEx == 0 {
		return &Error{Call: "cuLaunchKernelEx", Code: 500, Name: "CUDA_ERROR_NOT_FOUND", Msg: "the driver has no cuLaunchKernelEx"}
	}
	// The configuration points to its attribute: both in C memory, which
	// the garbage collector neither moves nor scans.
	mem := cMalloc(launchConfigSize + launchAttributeSize)
	defer cFree(mem)
	b := unsafe.Slice((*byte)(mem), launchConfigSize+launchAttributeSize)
	clear(b)
	le := binary.LittleEndian
	for i, v := range []uint32{grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedMem} {
		le.PutUint32(b[4*i:], v)
	}
	le.PutUint64(b[32:], uint64(uintptr(s.p)))
	le.PutUint64(b[40:], uint64(uintptr(mem)+launchConfigSize))
	le.PutUint32(b[48:], 1)
	attr := b[launchConfigSize:]
	le.PutUint32(attr[0:], launchAttrProgrammaticSerialization)
	le.PutUint32(attr[8:], 1)
	var params unsafe.Pointer
	if args != nil {
		params = args.ptrs
	}
	if r := callC(d.fn.launchKernelEx, uintptr(mem), uintptr(f.p), uintptr(params), 0); r != 0 {
		return d.err("cuLaunchKernelEx", r)
	}
	return nil
}
