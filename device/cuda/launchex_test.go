package cuda

import (
	"testing"
	"unsafe"
)

// TestLaunchPDLFake checks LaunchPDL's cuLaunchKernelEx call against the
// fake libcuda: the configuration's grid, block, shared memory and stream
// where the driver reads them, one attribute allowing programmatic stream
// serialization, and the error of a null function.
func TestLaunchPDLFake(t *testing.T) {
	d, err := OpenDriver(Options{LibDir: fakeDriver(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !d.CanLaunchPDL() {
		t.Fatal("CanLaunchPDL: false with a 13.0 driver that has cuLaunchKernelEx")
	}
	last, err := d.lib.sym("fakeLastLaunchEx")
	if err != nil {
		t.Fatal(err)
	}
	// handles are opaque to the fake: addresses of C memory stand for them
	fn, s1, s2 := cMalloc(1), cMalloc(1), cMalloc(1)
	defer func() { cFree(fn); cFree(s1); cFree(s2) }()
	args := NewKernelArgs(1)
	defer args.Free()
	args.SetInt32(0, 7)
	tests := []struct {
		grid, block Dim3
		shmem       uint32
		s           Stream
	}{
		{Dim3{8, 12, 1}, Dim3{32, 1, 1}, 0, Stream{}},
		{Dim3{32, 1, 1}, Dim3{128, 1, 1}, 18 << 10, Stream{s1}},
		{Dim3{1, 65535, 3}, Dim3{16, 16, 4}, 1, Stream{s2}},
	}
	for i, tt := range tests {
		if err := d.LaunchPDL(Function{fn}, tt.grid, tt.block, tt.shmem, tt.s, args); err != nil {
			t.Fatalf("launch %d: %v", i, err)
		}
		var n int32
		var dims [7]uint32
		var s unsafe.Pointer
		call(last, uintptr(unsafe.Pointer(&n)), uintptr(unsafe.Pointer(&dims[0])), uintptr(unsafe.Pointer(&s)))
		want := [7]uint32{tt.grid.X, tt.grid.Y, tt.grid.Z, tt.block.X, tt.block.Y, tt.block.Z, tt.shmem}
		if int(n) != i+1 || dims != want || s != tt.s.p {
			t.Errorf("launch %d: the driver saw launch %d, dims %v, stream %p; want %v, %p", i, n, dims, s, want, tt.s.p)
		}
	}
	err = d.LaunchPDL(Function{}, Dim3{1, 1, 1}, Dim3{1, 1, 1}, 0, Stream{}, nil)
	if want := "cuda: cuLaunchKernelEx: CUDA_ERROR_INVALID_HANDLE (400): invalid resource handle"; err == nil || err.Error() != want {
		t.Errorf("LaunchPDL of a null function = %v, want %q", err, want)
	}
	// a driver before CUDA 12.3 does not capture the dependency as such
	d.version = 12020
	if d.CanLaunchPDL() {
		t.Error("CanLaunchPDL: true with a 12.2 driver")
	}
}
