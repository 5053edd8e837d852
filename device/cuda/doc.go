// Package cuda holds kiln's CUDA bindings, opened at run time.
//
// Nothing of CUDA is linked when kiln is built: the driver API (libcuda),
// NVRTC, cuBLASLt, cuDNN and NVML are opened with dlopen when first used, their
// functions looked up once with dlsym and called through C function
// pointers, all with github.com/ebitengine/purego: the package uses no cgo,
// so kiln builds with CGO_ENABLED=0 and cross-compiles (linux/arm64). Every
// bound function takes only integers and pointers (cuDNN's and cuBLASLt's
// float scales are passed by pointer), and the calls made once per kernel,
// copy or graph replay do not allocate. The same binary therefore builds and
// runs on a machine without CUDA, where the Open functions and Probe return
// an error wrapping ErrUnavailable that names the library and the file names
// tried. (A binary that uses purego is linked dynamically with the C library,
// which dlopen needs.)
//
// Libraries are found through the standard library search path, then the
// usual CUDA directories (/usr/local/cuda/lib64 and
// /usr/local/cuda/targets/<arch>-linux/lib). The environment variable
// KILN_CUDA_LIB_PATH (a list of directories, separated like PATH) or
// Options.LibDir replaces that search: only those directories are tried.
//
// Every failing CUDA call returns an *Error naming the call, the error name
// and its description; it wraps ErrCUDA (and ErrOutOfMemory when the device
// is out of memory).
//
// Driver, NVRTC, CUBLASLt, CUDNN and NVML values hold only function
// pointers resolved when they are opened and may be used from several
// goroutines; libraries, once in use, stay loaded for the life of the
// process. The CUDA driver binds contexts to OS threads: callers that use a Context
// must call runtime.LockOSThread and Driver.SetCurrent on that thread.
//
// Kernel sources (kernels/*.cu) are embedded in the binary and compiled with
// NVRTC at run time for the device's compute capability (see CompileKernels).
//
// Beyond handles, cuDNN's legacy convolution API (CUDNN.NewConv, still
// exported by cuDNN 9) and cuBLASLt's matmul (CUBLASLt.NewMatmul,
// NewMatmulWith with a bias epilogue) are bound, in true float32 (no TF32)
// or in half with float32 accumulation on tensor cores (ConvParams.Half,
// MatmulOptions.Half). Package gpuexec builds on these to run
// optimized graphs. GPU is the "cuda" device without an executor (name,
// FingerprintOf, the GPUs this process can use); gpuexec.Device adds the
// executor, and package devices lists that one: nothing registers itself.
package cuda
