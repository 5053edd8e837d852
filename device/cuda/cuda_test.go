package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLibraryNotFound points the override at an empty directory: every
// Open function must fail with ErrUnavailable, naming the library and the
// files tried.
func TestLibraryNotFound(t *testing.T) {
	dir := t.TempDir()
	o := Options{LibDir: dir}
	tests := []struct {
		lib   string
		names []string
		open  func() error
	}{
		{"libcuda", libCUDA, func() error { _, err := OpenDriver(o); return err }},
		{"libnvrtc", libNVRTC, func() error { _, err := OpenNVRTC(o); return err }},
		{"libcublasLt", libCUBLASLt, func() error { _, err := OpenCUBLASLt(o); return err }},
		{"libcudnn", libCUDNN, func() error { _, err := OpenCUDNN(o); return err }},
		{"libnvidia-ml", libNVML, func() error { _, err := OpenNVML(o); return err }},
		{"libcuda", libCUDA, func() error { _, err := Probe(o); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.lib, func(t *testing.T) {
			err := tt.open()
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("error %v, want ErrUnavailable", err)
			}
			var le *LibError
			if !errors.As(err, &le) {
				t.Fatalf("error %T, want *LibError", err)
			}
			if le.Lib != tt.lib {
				t.Errorf("Lib %q, want %q", le.Lib, tt.lib)
			}
			msg := err.Error()
			if !strings.Contains(msg, "cannot open "+tt.lib) {
				t.Errorf("message %q does not name %s", msg, tt.lib)
			}
			for _, n := range tt.names {
				if !strings.Contains(msg, filepath.Join(dir, n)) {
					t.Errorf("message %q does not name %s", msg, n)
				}
			}
			if len(le.Tried) != len(tt.names) {
				t.Errorf("tried %v: the standard search path must not be used with an override", le.Tried)
			}
		})
	}
}

func TestEnvOverride(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvLibPath, dir+string(os.PathListSeparator)+"/nonexistent/kiln")
	_, err := OpenNVRTC(Options{})
	var le *LibError
	if !errors.As(err, &le) {
		t.Fatalf("error %v, want *LibError", err)
	}
	if want := 2 * len(libNVRTC); len(le.Tried) != want {
		t.Fatalf("tried %d files, want %d: %v", len(le.Tried), want, le.Tried)
	}
	if !strings.HasPrefix(le.Tried[0], dir) || !strings.HasPrefix(le.Tried[len(libNVRTC)], "/nonexistent/kiln") {
		t.Errorf("tried %v, want the override directories in order", le.Tried)
	}
	// Options.LibDir wins over the environment.
	other := t.TempDir()
	_, err = OpenNVRTC(Options{LibDir: other})
	if !errors.As(err, &le) || !strings.HasPrefix(le.Tried[0], other) {
		t.Errorf("LibDir did not take precedence: %v", err)
	}
}

func TestSearchDirsDefault(t *testing.T) {
	t.Setenv(EnvLibPath, "")
	dirs, standard := Options{}.searchDirs()
	if !standard || len(dirs) == 0 || dirs[0] != "/usr/local/cuda/lib64" {
		t.Errorf("searchDirs() = %v, %v; want the standard path then /usr/local/cuda/lib64", dirs, standard)
	}
}

// TestNotALibrary: a file with a library's name that is not one is an
// error that carries dlopen's reason.
func TestNotALibrary(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "libcudnn.so.9"), []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenCUDNN(Options{LibDir: dir})
	var le *LibError
	if !errors.As(err, &le) || le.Reason == "" {
		t.Fatalf("error %v, want a *LibError with dlopen's reason", err)
	}
}

// TestMissingSymbol opens a real library that lacks the functions.
func TestMissingSymbol(t *testing.T) {
	l, err := openLibrary("libc", []string{"libc.so.6"}, Options{LibDir: "/nonexistent"})
	if err == nil {
		l.close()
		t.Fatal("opened libc from a nonexistent directory")
	}
	l, err = openLibrary("libc", []string{"libc.so.6"}, Options{LibDir: ""})
	if err != nil {
		t.Skipf("libc.so.6 not found through the standard search path: %v", err)
	}
	defer l.close()
	if _, err := l.sym("malloc"); err != nil {
		t.Fatalf("malloc: %v", err)
	}
	_, err = l.sym("cuKilnNoSuchFunction", "cuKilnNoSuchFunction_v2")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "has no function cuKilnNoSuchFunction or cuKilnNoSuchFunction_v2") {
		t.Fatalf("error %v, want a missing-function ErrUnavailable", err)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
		oom  bool
	}{
		{&Error{Call: "cuMemAlloc(1024 bytes)", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY", Msg: "out of memory", OOM: true},
			"cuda: cuMemAlloc(1024 bytes): CUDA_ERROR_OUT_OF_MEMORY (2): out of memory", true},
		{&Error{Call: "cuLaunchKernel", Code: 700, Name: "CUDA_ERROR_ILLEGAL_ADDRESS", Msg: "an illegal memory access was encountered"},
			"cuda: cuLaunchKernel: CUDA_ERROR_ILLEGAL_ADDRESS (700): an illegal memory access was encountered", false},
		{&Error{Call: "nvrtcCompileProgram", Code: 6, Name: "NVRTC_ERROR_COMPILATION"},
			"cuda: nvrtcCompileProgram: NVRTC_ERROR_COMPILATION (6)", false},
		{&Error{Call: "cuInit", Code: 999}, "cuda: cuInit: (999)", false},
	}
	for _, tt := range tests {
		t.Run(tt.err.Call, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(tt.err, ErrCUDA) {
				t.Error("does not wrap ErrCUDA")
			}
			if errors.Is(tt.err, ErrOutOfMemory) != tt.oom {
				t.Errorf("errors.Is(ErrOutOfMemory) = %v, want %v", !tt.oom, tt.oom)
			}
		})
	}
}

func TestLibErrorFormat(t *testing.T) {
	tests := []struct {
		err  *LibError
		want string
	}{
		{&LibError{Lib: "libnvrtc", Tried: []string{"libnvrtc.so.13", "libnvrtc.so.12"}, Reason: "libnvrtc.so.12: cannot open shared object file"},
			"cuda: cannot open libnvrtc (tried libnvrtc.so.13, libnvrtc.so.12): libnvrtc.so.12: cannot open shared object file"},
		{&LibError{Lib: "libcuda", Tried: []string{"/x/libcuda.so.1"}, Symbol: "cuMemAlloc_v2"},
			"cuda: libcuda (/x/libcuda.so.1) has no function cuMemAlloc_v2"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

var h100 = Fingerprint{
	GPUName: "NVIDIA H100 80GB HBM3", ComputeMajor: 9, ComputeMinor: 0,
	DriverVersion: 13000, DriverRelease: "580.159.04",
	CUDNNVersion: 91400, CUBLASLtVer: 130100, NVRTCMajor: 13, NVRTCMinor: 0,
}

func TestFingerprintString(t *testing.T) {
	want := "NVIDIA H100 80GB HBM3 (compute 9.0), driver 13.0 (580.159.04), cuDNN 9.14.0, cuBLASLt 13.1.0, NVRTC 13.0"
	if got := h100.String(); got != want {
		t.Errorf("String() = %q\nwant       %q", got, want)
	}
	if got := h100.Arch(); got != "sm_90" {
		t.Errorf("Arch() = %q", got)
	}
	bare := Fingerprint{GPUName: "X", ComputeMajor: 8, ComputeMinor: 9, DriverVersion: 12040}
	if got, want := bare.String(), "X (compute 8.9), driver 12.4, cuDNN none, cuBLASLt none, NVRTC 0.0"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestFingerprintEqual(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Fingerprint)
		diff   string
	}{
		{"same", func(*Fingerprint) {}, ""},
		{"gpu", func(f *Fingerprint) { f.GPUName = "NVIDIA H200" }, "GPU: NVIDIA H100 80GB HBM3 != NVIDIA H200"},
		{"cc", func(f *Fingerprint) { f.ComputeMajor, f.ComputeMinor = 8, 9 }, "compute capability: 9.0 != 8.9"},
		{"driver", func(f *Fingerprint) { f.DriverVersion = 12080 }, "driver CUDA version: 13.0 != 12.8"},
		{"release", func(f *Fingerprint) { f.DriverRelease = "570.1" }, "driver release: 580.159.04 != 570.1"},
		{"cudnn", func(f *Fingerprint) { f.CUDNNVersion = 91900 }, "cuDNN: 9.14.0 != 9.19.0"},
		{"cublaslt", func(f *Fingerprint) { f.CUBLASLtVer = 0 }, "cuBLASLt: 13.1.0 != none"},
		{"nvrtc", func(f *Fingerprint) { f.NVRTCMinor = 1 }, "NVRTC: 13.0 != 13.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := h100
			tt.change(&g)
			if eq := h100.Equal(g); eq != (tt.diff == "") {
				t.Errorf("Equal = %v", eq)
			}
			got := strings.Join(h100.Diff(g), "; ")
			if got != tt.diff {
				t.Errorf("Diff = %q, want %q", got, tt.diff)
			}
		})
	}
}

func TestIsVirtualArch(t *testing.T) {
	tests := []struct {
		opts []string
		want bool
	}{
		{[]string{"--gpu-architecture=sm_90"}, false},
		{[]string{"-arch=sm_80", "-lineinfo"}, false},
		{[]string{"--gpu-architecture=compute_90"}, true},
		{nil, true},
	}
	for _, tt := range tests {
		if got := isVirtualArch(tt.opts); got != tt.want {
			t.Errorf("isVirtualArch(%q) = %v, want %v", tt.opts, got, tt.want)
		}
	}
}

func TestKernelSource(t *testing.T) {
	src := KernelSource()
	for _, k := range KernelNames {
		if !strings.Contains(src, k[:strings.LastIndex(k, "_")]) {
			t.Errorf("kernel %s not in the embedded sources", k)
		}
	}
	if strings.Contains(src, "#include") {
		t.Error("kernel sources must not include headers: NVRTC may have no include path")
	}
	if !strings.Contains(src, `#line 1 "kernels/elementwise.cu"`) {
		t.Error("no #line directive for elementwise.cu")
	}
}

func TestKernelArgs(t *testing.T) {
	a := NewKernelArgs(3)
	defer a.Free()
	a.SetPtr(0, 0x1234_5678_9abc)
	a.SetFloat32(1, 1.5)
	a.SetInt64(2, -7)
	if got := *(*uint64)(a.slot(0)); got != 0x1234_5678_9abc {
		t.Errorf("slot 0 = %#x", got)
	}
	if got := *(*float32)(a.slot(1)); got != 1.5 {
		t.Errorf("slot 1 = %v", got)
	}
	if got := *(*int64)(a.slot(2)); got != -7 {
		t.Errorf("slot 2 = %v", got)
	}
	if n := testing.AllocsPerRun(100, func() { a.SetInt32(1, 3) }); n != 0 {
		t.Errorf("SetInt32 allocates %v times", n)
	}
}

func TestTargetFor(t *testing.T) {
	archs := []int{50, 60, 70, 75, 80, 86, 89, 90}
	tests := []struct {
		cc      int
		want    string
		wantErr bool
	}{
		{90, "sm_90", false},
		{86, "sm_86", false},
		{100, "compute_90", false}, // newer than NVRTC: PTX for the driver to compile
		{87, "compute_86", false},
		{35, "", true},
	}
	for _, tt := range tests {
		got, err := targetFor(archs, tt.cc)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("targetFor(%d) = %q, %v; want %q (error %v)", tt.cc, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Errorf("error %v does not wrap ErrUnavailable", err)
		}
	}
}
