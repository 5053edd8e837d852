package cuda

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

// fakeDriver builds testdata/fakecuda.c into a directory as libcuda.so.1
// and returns that directory.
func fakeDriver(t testing.TB) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("needs a C compiler (cc) to build the fake libcuda: %v", err)
	}
	dir := t.TempDir()
	out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, "libcuda.so.1"), "testdata/fakecuda.c").CombinedOutput()
	if err != nil {
		t.Fatalf("building the fake libcuda: %v\n%s", err, out)
	}
	return dir
}

// TestFakeDriver runs the driver bindings and Probe against a fake libcuda.
func TestFakeDriver(t *testing.T) {
	dir := fakeDriver(t)
	o := Options{LibDir: dir}
	fp, err := Probe(o)
	if fp.GPUName != "Fake GPU" || fp.ComputeMajor != 9 || fp.ComputeMinor != 0 || fp.DriverVersion != 13000 {
		t.Fatalf("Probe = %+v, %v", fp, err)
	}
	// The other libraries are not in dir: their absence is reported.
	for _, lib := range []string{"libcudnn", "libcublasLt", "libnvrtc", "libnvidia-ml"} {
		if err == nil || !strings.Contains(err.Error(), "cannot open "+lib) {
			t.Errorf("Probe error %v does not report %s missing", err, lib)
		}
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Probe error %v does not wrap ErrUnavailable", err)
	}
	if _, err := Probe(Options{LibDir: dir, Device: 1}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no CUDA device 1 (1 found)") {
		t.Errorf("Probe of device 1: %v", err)
	}

	d, err := OpenDriver(o)
	if err != nil {
		t.Fatal(err)
	}
	if d.Path() != filepath.Join(dir, "libcuda.so.1") {
		t.Errorf("Path() = %q", d.Path())
	}
	if n, err := d.TotalMem(0); err != nil || n != 1<<30 {
		t.Errorf("TotalMem = %d, %v", n, err)
	}
	if p, err := d.MemAlloc(1024); err != nil || p != 0x10000 {
		t.Errorf("MemAlloc = %#x, %v", p, err)
	}
	_, err = d.MemAlloc(2 << 30)
	want := "cuda: cuMemAlloc(2147483648 bytes): CUDA_ERROR_OUT_OF_MEMORY (2): out of memory"
	if !errors.Is(err, ErrOutOfMemory) || !errors.Is(err, ErrCUDA) || err.Error() != want {
		t.Errorf("MemAlloc(2 GiB) = %v, want %q wrapping ErrOutOfMemory", err, want)
	}
	args := NewKernelArgs(2)
	defer args.Free()
	err = d.Launch(Function{}, Dim3{1, 1, 1}, Dim3{1, 1, 1}, 0, Stream{}, args)
	want = "cuda: cuLaunchKernel: CUDA_ERROR_INVALID_HANDLE (400): invalid resource handle"
	if err == nil || err.Error() != want {
		t.Errorf("Launch of a null function = %v, want %q", err, want)
	}
	if ms, err := d.EventElapsed(Event{}, Event{}); err != nil || ms != 1.5 {
		t.Errorf("EventElapsed = %v, %v", ms, err)
	}
	if _, err := d.ModuleLoadData(nil); !errors.Is(err, ErrCUDA) {
		t.Errorf("ModuleLoadData(nil) = %v", err)
	}
	var h HostBuffer
	if err := d.MemcpyHtoDAsync(0, h, 1, Stream{}); !errors.Is(err, ErrCUDA) {
		t.Errorf("copy past a pinned buffer = %v", err)
	}
}

// BenchmarkLaunchFake measures the bindings' own cost of one Launch, against
// the fake libcuda (whose cuLaunchKernel does nothing).
func BenchmarkLaunchFake(b *testing.B) {
	d, err := OpenDriver(Options{LibDir: fakeDriver(b)})
	if err != nil {
		b.Fatal(err)
	}
	args := NewKernelArgs(3)
	defer args.Free()
	f := Function{p: args.slots} // any non-null handle
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Launch(f, Dim3{4, 1, 1}, Dim3{256, 1, 1}, 0, Stream{}, args); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHotPathAllocsFake checks, against the fake libraries, that the calls
// made once per kernel, copy, library call or graph replay do not allocate
// (they go through purego with a pooled argument list).
func TestHotPathAllocsFake(t *testing.T) {
	d, err := OpenDriver(Options{LibDir: fakeDriver(t)})
	if err != nil {
		t.Fatal(err)
	}
	libs := fakeLibraries(t)
	dnn, err := OpenCUDNN(Options{LibDir: libs})
	if err != nil {
		t.Fatal(err)
	}
	lt, err := OpenCUBLASLt(Options{LibDir: libs})
	if err != nil {
		t.Fatal(err)
	}
	dh, err := dnn.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer dnn.Destroy(dh)
	lh, err := lt.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Destroy(lh)
	conv, err := dnn.NewConv(dh, ConvParams{N: 1, C: 3, H: 8, W: 8, M: 4, KH: 3, KW: 3, PadH: 1, PadW: 1,
		StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}, 8, 8, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer conv.Destroy()
	mm, err := lt.NewMatmul(lh, 4, 8, 16, false, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Destroy()
	pinned, err := d.MemAllocHost(64)
	if err != nil {
		t.Fatal(err)
	}
	defer d.MemFreeHost(pinned)
	args := NewKernelArgs(3)
	defer args.Free()
	args.SetPtr(0, 0x10000)
	args.SetInt32(1, 7)
	args.SetFloat32(2, 0.5)
	f := Function{p: args.slots} // any non-null handle
	tests := []struct {
		name string
		run  func() error
	}{
		{"Launch", func() error { return d.Launch(f, Dim3{4, 1, 1}, Dim3{256, 1, 1}, 0, Stream{}, args) }},
		{"GraphLaunch", func() error { return d.GraphLaunch(GraphExec{}, Stream{}) }},
		{"EventRecord", func() error { return d.EventRecord(Event{}, Stream{}) }},
		{"StreamSynchronize", func() error { return d.StreamSynchronize(Stream{}) }},
		{"MemcpyHtoDAsync", func() error { return d.MemcpyHtoDAsync(0x10000, pinned, 64, Stream{}) }},
		{"MemcpyDtoHAsync", func() error { return d.MemcpyDtoHAsync(pinned, 0x10000, 64, Stream{}) }},
		{"CUDNN.SetStream", func() error { return dnn.SetStream(dh, Stream{}) }},
		{"CUDNNConv.Forward", func() error { return conv.Forward(dh, 1, 2, 3, 4, conv.Workspace) }},
		{"LtMatmul.Run", func() error { return mm.Run(lh, 1, 2, 3, 4, mm.Workspace, Stream{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(100, func() { _ = tt.run() }); n != 0 {
				t.Errorf("%s allocates %v times per call, want 0", tt.name, n)
			}
		})
	}
}

// TestCHelpers checks the C memory and C string helpers that replaced cgo's.
func TestCHelpers(t *testing.T) {
	for _, s := range []string{"", "x", "sm_90", strings.Repeat("k", 4097)} {
		p := cString(s)
		if got := goString(uintptr(p)); got != s {
			t.Errorf("goString(cString(%.10q)) = %.10q", s, got)
		}
		cFree(p)
	}
	if got := goString(0); got != "" {
		t.Errorf("goString(NULL) = %q", got)
	}
	for _, tt := range []struct {
		buf  []byte
		want string
	}{
		{[]byte("Fake GPU\x00junk"), "Fake GPU"},
		{[]byte("no terminator"), "no terminator"},
		{[]byte{0, 'a'}, ""},
		{nil, ""},
	} {
		if got := cStringIn(tt.buf); got != tt.want {
			t.Errorf("cStringIn(%q) = %q, want %q", tt.buf, got, tt.want)
		}
	}
	p := cMalloc(100)
	if b := unsafe.Slice((*byte)(p), 100); !bytes.Equal(b, make([]byte, 100)) {
		t.Errorf("cMalloc memory is not zeroed: %v", b)
	}
	cFree(p)
}
