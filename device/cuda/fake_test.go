package cuda

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
