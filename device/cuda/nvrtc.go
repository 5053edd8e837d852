package cuda

import (
	"fmt"
	"strings"
	"unsafe"
)

// NVRTC is the CUDA run-time compiler (libnvrtc).
type NVRTC struct {
	lib          *library
	major, minor int
	fn           struct {
		version, errorString, create, compile, logSize, log uintptr
		cubinSize, cubin, ptxSize, ptx, destroy             uintptr
		numArchs, archs                                     uintptr // optional (NVRTC 11.2+)
	}
}

// OpenNVRTC opens libnvrtc (13, 12 or 11.2) and reads its version.
func OpenNVRTC(o Options) (*NVRTC, error) {
	lib, err := openLibrary("libnvrtc", libNVRTC, o)
	if err != nil {
		return nil, err
	}
	n := &NVRTC{lib: lib}
	f := &n.fn
	if err := lib.symbols([]symbol{
		sym(&f.version, "nvrtcVersion"),
		sym(&f.errorString, "nvrtcGetErrorString"),
		sym(&f.create, "nvrtcCreateProgram"),
		sym(&f.compile, "nvrtcCompileProgram"),
		sym(&f.logSize, "nvrtcGetProgramLogSize"),
		sym(&f.log, "nvrtcGetProgramLog"),
		sym(&f.cubinSize, "nvrtcGetCUBINSize"),
		sym(&f.cubin, "nvrtcGetCUBIN"),
		sym(&f.ptxSize, "nvrtcGetPTXSize"),
		sym(&f.ptx, "nvrtcGetPTX"),
		sym(&f.destroy, "nvrtcDestroyProgram"),
	}); err != nil {
		lib.close()
		return nil, err
	}
	f.numArchs, _ = lib.sym("nvrtcGetNumSupportedArchs")
	f.archs, _ = lib.sym("nvrtcGetSupportedArchs")
	var ma, mi int32
	if r := call(f.version, uintptr(unsafe.Pointer(&ma)), uintptr(unsafe.Pointer(&mi))); r != 0 {
		lib.close()
		return nil, n.err("nvrtcVersion", r)
	}
	n.major, n.minor = int(ma), int(mi)
	return n, nil
}

// Version returns NVRTC's version, e.g. 13, 0.
func (n *NVRTC) Version() (major, minor int) { return n.major, n.minor }

// Path returns the file libnvrtc was opened from.
func (n *NVRTC) Path() string { return n.lib.path }

func (n *NVRTC) err(fn string, r int32) error {
	e := &Error{Call: fn, Code: int(r), OOM: r == 1} // NVRTC_ERROR_OUT_OF_MEMORY
	if s := callPtr(n.fn.errorString, uintptr(r)); s != 0 {
		e.Name = goString(s)
	}
	return e
}

// Compiled is the result of compiling one source with NVRTC.
type Compiled struct {
	CUBIN []byte // the cubin, when compiled for a real architecture (sm_XX)
	PTX   []byte // the PTX, when compiled for a virtual one (compute_XX)
	Log   string // the compiler's log (warnings)
}

// Compile compiles CUDA source with the given options, e.g.
// "--gpu-architecture=sm_90". A compilation error wraps ErrCompile and
// carries the compiler's log.
func (n *NVRTC) Compile(name, src string, opts ...string) (*Compiled, error) {
	csrc, cname := cString(src), cString(name)
	defer cFree(csrc)
	defer cFree(cname)
	var prog unsafe.Pointer
	// nvrtcCreateProgram(prog, src, name, numHeaders, headers, includeNames)
	if r := call(n.fn.create, uintptr(unsafe.Pointer(&prog)), uintptr(csrc), uintptr(cname), 0, 0, 0); r != 0 {
		return nil, n.err("nvrtcCreateProgram("+name+")", r)
	}
	defer func() { call(n.fn.destroy, uintptr(unsafe.Pointer(&prog))) }()

	// The option list is an array of C strings: C memory, since Go memory
	// passed to C must not hold Go pointers.
	ptrSize := int(unsafe.Sizeof(uintptr(0)))
	copts := cMalloc((len(opts) + 1) * ptrSize)
	list := unsafe.Slice((*unsafe.Pointer)(copts), len(opts)+1)
	for i, o := range opts {
		list[i] = cString(o)
	}
	defer func() {
		for _, p := range list {
			cFree(p)
		}
		cFree(copts)
	}()
	restore := KeepSignals() // NVRTC re-installs Go's SIGTERM handler without SA_ONSTACK
	rc := call(n.fn.compile, uintptr(prog), uintptr(len(opts)), uintptr(copts))
	restore()
	log, err := n.get(prog, n.fn.logSize, n.fn.log, "nvrtcGetProgramLog")
	if err != nil {
		return nil, err
	}
	out := &Compiled{Log: strings.TrimRight(string(log), "\x00\n ")}
	if rc != 0 {
		return nil, fmt.Errorf("%w: %s: %w\n%s", ErrCompile, name, n.err("nvrtcCompileProgram", rc), out.Log)
	}
	if virtual := isVirtualArch(opts); virtual {
		ptx, err := n.get(prog, n.fn.ptxSize, n.fn.ptx, "nvrtcGetPTX")
		if err != nil {
			return nil, err
		}
		out.PTX = []byte(strings.TrimRight(string(ptx), "\x00"))
		return out, nil
	}
	if out.CUBIN, err = n.get(prog, n.fn.cubinSize, n.fn.cubin, "nvrtcGetCUBIN"); err != nil {
		return nil, err
	}
	return out, nil
}

// isVirtualArch reports whether the options ask for PTX (compute_XX, or no
// architecture at all) rather than a cubin.
func isVirtualArch(opts []string) bool {
	for _, o := range opts {
		for _, p := range []string{"--gpu-architecture=", "-arch=", "-arch "} {
			if a, ok := strings.CutPrefix(o, p); ok {
				return !strings.HasPrefix(a, "sm_")
			}
		}
	}
	return true
}

// get reads one of the program's outputs through its size and copy functions.
func (n *NVRTC) get(prog unsafe.Pointer, sizeFn, getFn uintptr, fn string) ([]byte, error) {
	var size uintptr // size_t
	if r := call(sizeFn, uintptr(prog), uintptr(unsafe.Pointer(&size))); r != 0 {
		return nil, n.err(fn+"Size", r)
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	if r := call(getFn, uintptr(prog), uintptr(unsafe.Pointer(&buf[0]))); r != 0 {
		return nil, n.err(fn, r)
	}
	return buf, nil
}

// SupportedArchs returns the compute capabilities NVRTC can compile for, as
// 10*major+minor (e.g. 90 for sm_90), in increasing order.
func (n *NVRTC) SupportedArchs() ([]int, error) {
	if n.fn.numArchs == 0 || n.fn.archs == 0 {
		return nil, &LibError{Lib: n.lib.name, Tried: []string{n.lib.path}, Symbol: "nvrtcGetSupportedArchs"}
	}
	var cnt int32
	if r := call(n.fn.numArchs, uintptr(unsafe.Pointer(&cnt))); r != 0 {
		return nil, n.err("nvrtcGetNumSupportedArchs", r)
	}
	if cnt <= 0 {
		return nil, nil
	}
	buf := make([]int32, int(cnt))
	if r := call(n.fn.archs, uintptr(unsafe.Pointer(&buf[0]))); r != 0 {
		return nil, n.err("nvrtcGetSupportedArchs", r)
	}
	out := make([]int, len(buf))
	for i, a := range buf {
		out[i] = int(a)
	}
	return out, nil
}

// TargetFor returns the NVRTC architecture to compile for a device of
// compute capability major.minor: "sm_XY" when NVRTC supports it (a cubin),
// else "compute_XY" of the newest architecture it supports that is not
// newer than the device (PTX, which the driver compiles when loading). It
// fails, wrapping ErrUnavailable, when NVRTC supports nothing that old.
func (n *NVRTC) TargetFor(major, minor int) (string, error) {
	archs, err := n.SupportedArchs()
	if err != nil {
		return "", err
	}
	return targetFor(archs, major*10+minor)
}

func targetFor(archs []int, cc int) (string, error) {
	best := -1
	for _, a := range archs {
		if a == cc {
			return fmt.Sprintf("sm_%d", cc), nil
		}
		if a < cc && a > best {
			best = a
		}
	}
	if best < 0 {
		return "", fmt.Errorf("%w: NVRTC supports no architecture up to compute capability %d.%d (it supports %v)", ErrUnavailable, cc/10, cc%10, archs)
	}
	return fmt.Sprintf("compute_%d", best), nil
}
