package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// EnvLibPath is the environment variable that overrides where CUDA libraries
// are looked for: a list of directories separated by os.PathListSeparator.
const EnvLibPath = "KILN_CUDA_LIB_PATH"

var (
	// ErrUnavailable is returned when a CUDA library cannot be opened, lacks a
	// function, or when no CUDA device is usable.
	ErrUnavailable = errors.New("cuda: unavailable")
	// ErrCUDA is wrapped by every *Error: a CUDA, NVRTC, cuBLASLt, cuDNN or
	// NVML call failed.
	ErrCUDA = errors.New("cuda: call failed")
	// ErrOutOfMemory is wrapped by an *Error whose call ran out of memory.
	ErrOutOfMemory = errors.New("cuda: out of memory")
	// ErrCompile is returned when NVRTC fails to compile a kernel source.
	ErrCompile = errors.New("cuda: kernel compilation failed")
)

// Options says where to find the CUDA libraries.
type Options struct {
	// LibDir, when not empty, replaces the search: only these directories
	// (separated by os.PathListSeparator) are tried. It takes precedence over
	// the KILN_CUDA_LIB_PATH environment variable.
	LibDir string
	// Device is the ordinal of the GPU that Probe describes.
	Device int
}

// envLibDir is the one place where KILN_CUDA_LIB_PATH is read.
func envLibDir() string { return os.Getenv(EnvLibPath) }

// searchDirs returns the directories to try, and whether the standard
// search path is used first.
func (o Options) searchDirs() (dirs []string, standard bool) {
	d := o.LibDir
	if d == "" {
		d = envLibDir()
	}
	if d != "" {
		for _, s := range filepath.SplitList(d) {
			if s != "" {
				dirs = append(dirs, s)
			}
		}
		return dirs, false
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "sbsa"}[runtime.GOARCH]
	dirs = []string{"/usr/local/cuda/lib64"}
	if arch != "" {
		dirs = append(dirs, "/usr/local/cuda/targets/"+arch+"-linux/lib")
	}
	return dirs, true
}

// Library file names, newest first.
var (
	libCUDA     = []string{"libcuda.so.1", "libcuda.so"}
	libNVRTC    = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}
	libCUBLASLt = []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"}
	libCUDNN    = []string{"libcudnn.so.9", "libcudnn.so"}
	libNVML     = []string{"libnvidia-ml.so.1", "libnvidia-ml.so"}
)

// LibError says that a library could not be opened, or lacks a function. It
// wraps ErrUnavailable.
type LibError struct {
	Lib    string   // the library, e.g. "libnvrtc"
	Tried  []string // the files tried, in order
	Symbol string   // the missing function, when the library opened
	Reason string   // the last dlopen or dlsym error
}

// Error describes the failure, naming the library and what was tried.
func (e *LibError) Error() string {
	if e.Symbol != "" {
		return fmt.Sprintf("cuda: %s (%s) has no function %s", e.Lib, strings.Join(e.Tried, ", "), e.Symbol)
	}
	s := fmt.Sprintf("cuda: cannot open %s (tried %s)", e.Lib, strings.Join(e.Tried, ", "))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Unwrap returns ErrUnavailable.
func (e *LibError) Unwrap() error { return ErrUnavailable }

// library is an opened shared library.
type library struct {
	name string // "libcuda"
	path string // the file that opened
	h    uintptr
}

// openLibrary tries names in the standard search path and then in the
// directories of o (or only in the override directories).
func openLibrary(lib string, names []string, o Options) (*library, error) {
	defer KeepSignals()() // a library's initializers may install handlers
	dirs, standard := o.searchDirs()
	var tried []string
	if standard {
		tried = append(tried, names...)
	}
	for _, d := range dirs {
		for _, n := range names {
			tried = append(tried, filepath.Join(d, n))
		}
	}
	var reason string
	for _, p := range tried {
		h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err == nil && h != 0 {
			return &library{name: lib, path: p, h: h}, nil
		}
		if err != nil && err.Error() != "" {
			// Keep the first reason, unless a later one says more than
			// that the file does not exist (a wrong architecture, a
			// missing dependency).
			r := err.Error()
			if reason == "" || strings.Contains(reason, "No such file") && !strings.Contains(r, "No such file") {
				reason = r
			}
		}
	}
	return nil, &LibError{Lib: lib, Tried: tried, Reason: reason}
}

// sym returns the first of names that the library exports.
func (l *library) sym(names ...string) (uintptr, error) {
	for _, n := range names {
		if p, err := purego.Dlsym(l.h, n); err == nil && p != 0 {
			return p, nil
		}
	}
	return 0, &LibError{Lib: l.name, Tried: []string{l.path}, Symbol: strings.Join(names, " or ")}
}

// symbols resolves every entry of table, stopping at the first missing one.
func (l *library) symbols(table []symbol) error {
	for _, s := range table {
		p, err := l.sym(s.names...)
		if err != nil {
			return err
		}
		*s.dst = p
	}
	return nil
}

// symbol is one function to resolve: where to store it, and its names.
type symbol struct {
	dst   *uintptr
	names []string
}

func sym(dst *uintptr, names ...string) symbol { return symbol{dst, names} }

// close releases the library. It is called only when opening failed
// before any of its functions ran: a library in use stays loaded for the
// life of the process (dlopen counts references, so opening it again is
// cheap).
func (l *library) close() {
	if l != nil && l.h != 0 {
		_ = purego.Dlclose(l.h)
		l.h = 0
	}
}

// Error is a failed CUDA, NVRTC, cuBLASLt, cuDNN or NVML call. It wraps
// ErrCUDA, and ErrOutOfMemory when the call ran out of memory.
type Error struct {
	Call string // the function, e.g. "cuMemAlloc"
	Code int    // the status code it returned
	Name string // the status name, e.g. "CUDA_ERROR_OUT_OF_MEMORY", when known
	Msg  string // the description, when known
	OOM  bool   // the call ran out of memory
}

// Error formats the call, the error name, its code and description.
func (e *Error) Error() string {
	s := "cuda: " + e.Call + ": "
	if e.Name != "" {
		s += e.Name + " "
	}
	s += fmt.Sprintf("(%d)", e.Code)
	if e.Msg != "" && e.Msg != e.Name {
		s += ": " + e.Msg
	}
	return s
}

// Unwrap returns ErrCUDA, and ErrOutOfMemory for an out-of-memory error.
func (e *Error) Unwrap() []error {
	if e.OOM {
		return []error{ErrCUDA, ErrOutOfMemory}
	}
	return []error{ErrCUDA}
}

// call calls the C function fn, whose arguments are all integers or
// pointers (C memory, or Go memory that holds no Go pointers, converted in
// the call expression as unsafe.Pointer's rule 4 says), and returns its C
// int result. It does not allocate when no argument is the address of a
// local variable, so the launch path stays free of allocations.
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) int32 {
	r, _, _ := purego.SyscallN(fn, args...)
	return int32(r) // a C int is the low 32 bits of the result register
}

// maxCallArgs is the most arguments callC passes
// (cudnnConvolutionBiasActivationForward's 18).
const maxCallArgs = 18

// callArgs is a reusable argument list: purego.SyscallN keeps its variadic
// list alive (it is go:uintptrescapes), so a list built on the stack would
// move to the heap at every call.
type callArgs [maxCallArgs]uintptr

var callArgPool = sync.Pool{New: func() any { return new(callArgs) }}

// callC calls the C function fn like call, for the calls that run once per
// kernel, copy or graph replay: every argument is an integer, C memory, or
// the address of a package-level variable (which never moves). It does not
// allocate. Arguments that point to other Go memory go through call, which
// is marked uintptrescapes so that such memory stays in place.
func callC(fn uintptr, args ...uintptr) int32 {
	if len(args) > maxCallArgs {
		panic("cuda: callC with more than maxCallArgs arguments")
	}
	a := callArgPool.Get().(*callArgs)
	n := copy(a[:], args)
	r, _, _ := purego.SyscallN(fn, a[:n]...)
	callArgPool.Put(a)
	return int32(r) // a C int is the low 32 bits of the result register
}

// callPtr calls fn like call and returns its pointer-sized result (a
// size_t, or a const char *).
//
//go:uintptrescapes
func callPtr(fn uintptr, args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(fn, args...)
	return r
}

// goString copies the NUL-terminated C string at p ("" for NULL).
func goString(p uintptr) string {
	// Read through a pointer to p, so that vet sees no uintptr turned into a
	// pointer: p is C memory, which the garbage collector does not move.
	ptr := *(*unsafe.Pointer)(unsafe.Pointer(&p))
	if ptr == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(ptr, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(ptr), n))
}

// cStringIn returns the C string in buf: up to its first NUL, or all of it.
func cStringIn(buf []byte) string {
	for i, c := range buf {
		if c == 0 {
			return string(buf[:i])
		}
	}
	return string(buf)
}

// cBytes is NUL-terminated s in Go memory, for a C function that only
// reads it during the call.
func cBytes(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// libc holds the C library's allocator, for memory that C keeps or that
// holds pointers (kernel arguments, option lists), which Go memory must not.
var libc struct {
	once         sync.Once
	malloc, free uintptr
	err          error
}

// loadLibc resolves malloc and free: from libc.so.6, else from the
// libraries already loaded (a binary that uses purego is linked with libc).
func loadLibc() error {
	libc.once.Do(func() {
		h, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			h = purego.RTLD_DEFAULT
		}
		if libc.malloc, err = purego.Dlsym(h, "malloc"); err == nil {
			libc.free, err = purego.Dlsym(h, "free")
		}
		if err != nil {
			libc.err = fmt.Errorf("%w: the C library's malloc and free: %v", ErrUnavailable, err)
		}
	})
	return libc.err
}

// cMalloc allocates n bytes of zeroed C memory; free it with cFree. It
// panics when the C library cannot be used (it is loaded in every process
// that can call into C) or out of memory, like make.
func cMalloc(n int) unsafe.Pointer {
	if err := loadLibc(); err != nil {
		panic(err)
	}
	if n < 1 {
		n = 1
	}
	p := callPtr(libc.malloc, uintptr(n))
	if p == 0 {
		panic(fmt.Sprintf("cuda: malloc(%d): out of memory", n))
	}
	ptr := *(*unsafe.Pointer)(unsafe.Pointer(&p))
	clear(unsafe.Slice((*byte)(ptr), n))
	return ptr
}

// cFree frees memory from cMalloc.
func cFree(p unsafe.Pointer) {
	if p != nil {
		call(libc.free, uintptr(p))
	}
}

// cString copies s into C memory with a NUL; free it with cFree.
func cString(s string) unsafe.Pointer {
	p := cMalloc(len(s) + 1)
	copy(unsafe.Slice((*byte)(p), len(s)), s)
	return p
}
