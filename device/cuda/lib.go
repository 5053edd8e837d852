package cuda

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"
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
	h    unsafe.Pointer
}

// openLibrary tries names in the standard search path and then in the
// directories of o (or only in the override directories).
func openLibrary(lib string, names []string, o Options) (*library, error) {
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
		cs := C.CString(p)
		h := C.kiln_dlopen(cs)
		C.free(unsafe.Pointer(cs))
		if h != nil {
			return &library{name: lib, path: p, h: h}, nil
		}
		if e := C.kiln_dlerror(); e != nil {
			// Keep the first reason, unless a later one says more than
			// that the file does not exist (a wrong architecture, a
			// missing dependency).
			r := C.GoString(e)
			if reason == "" || strings.Contains(reason, "No such file") && !strings.Contains(r, "No such file") {
				reason = r
			}
		}
	}
	return nil, &LibError{Lib: lib, Tried: tried, Reason: reason}
}

// sym returns the first of names that the library exports.
func (l *library) sym(names ...string) (unsafe.Pointer, error) {
	for _, n := range names {
		cs := C.CString(n)
		p := C.kiln_dlsym(l.h, cs)
		C.free(unsafe.Pointer(cs))
		if p != nil {
			return p, nil
		}
	}
	return nil, &LibError{Lib: l.name, Tried: []string{l.path}, Symbol: strings.Join(names, " or ")}
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
	dst   *unsafe.Pointer
	names []string
}

func sym(dst *unsafe.Pointer, names ...string) symbol { return symbol{dst, names} }

// close releases the library. It is called only when opening failed
// before any of its functions ran: a library in use stays loaded for the
// life of the process (dlopen counts references, so opening it again is
// cheap).
func (l *library) close() {
	if l != nil && l.h != nil {
		C.kiln_dlclose(l.h)
		l.h = nil
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

// cString copies s into C memory; the caller frees it.
func cString(s string) *C.char { return C.CString(s) }
