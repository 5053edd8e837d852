package cudashm_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/serve/cudashm"
	"github.com/kilnai/kiln/serve/shm"
)

// TestRegistry registers, reads, writes and unregisters regions with the
// fake libcuda, whose "device allocations" are shared memory objects.
func TestRegistry(t *testing.T) {
	r := cudashm.New(cuda.Options{LibDir: fakeLib(t)})
	defer r.Close()
	h, path := fakeHandle(t, "reg", 4096)
	badMagic := bytes.Clone(h)
	badMagic[0] = 'K'
	for _, c := range []struct {
		describe, name string
		handle         []byte
		device         int64
		size           uint64
		err            error
		has            string
	}{
		{"no name", "", h, 0, 16, shm.ErrInvalid, "needs a name"},
		{"a short handle", "a", h[:63], 0, 16, shm.ErrInvalid, "raw_handle is 63 bytes, a CUDA IPC handle (cudaIpcMemHandle_t) 64"},
		{"no handle", "a", nil, 0, 16, shm.ErrInvalid, "raw_handle is 0 bytes"},
		{"empty", "a", h, 0, 0, shm.ErrInvalid, "byte_size must be positive"},
		{"device past the last", "a", h, 1, 16, shm.ErrInvalid, "device_id 1 is out of range: the server has 1 CUDA device(s)"},
		{"negative device", "a", h, -1, 16, shm.ErrInvalid, "device_id -1 is out of range"},
		{"a handle that does not open", "a", badMagic, 0, 16, shm.ErrInvalid, "raw_handle does not open on device 0: cuda: cuIpcOpenMemHandle: CUDA_ERROR_INVALID_VALUE"},
		{"larger than the allocation", "a", h, 0, 4097, shm.ErrInvalid, "byte_size 4097 is larger than the allocation the handle names (4096 bytes)"},
		{"the whole allocation", "a", h, 0, 4096, nil, ""},
		{"a name taken", "a", h, 0, 16, shm.ErrExists, "unregister it first"},
		{"part of it", "b", h, 0, 100, nil, ""},
	} {
		err := r.Register(c.name, c.handle, c.device, c.size)
		if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) || err != nil && !strings.Contains(err.Error(), c.has) {
			t.Errorf("%s: Register = %v, want %v with %q", c.describe, err, c.err, c.has)
		}
	}
	st, err := r.Status("")
	if err != nil || len(st) != 2 || st[0] != (shm.CudaRegion{Name: "a", DeviceID: 0, ByteSize: 4096}) || st[1].Name != "b" {
		t.Fatalf("status: %+v %v", st, err)
	}
	if _, err := r.Status("zz"); !errors.Is(err, shm.ErrNotFound) {
		t.Fatalf("status of an unknown region: %v", err)
	}
	// writes reach the client's allocation, reads see it
	if err := r.Write("b", 10, []byte("to the device")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.HasPrefix(b[10:], []byte("to the device")) {
		t.Fatalf("allocation after the write: %q", b[:30])
	}
	got := make([]byte, 6)
	if err := r.ReadInto("a", 17, got); err != nil || string(got) != "device" {
		t.Fatalf("ReadInto = %q %v", got, err)
	}
	for _, c := range []struct {
		name         string
		offset, size uint64
		err          error
	}{
		{"b", 0, 100, nil},
		{"b", 99, 1, nil},
		{"b", 100, 0, nil},
		{"b", 100, 1, shm.ErrInvalid},
		{"b", 1, 100, shm.ErrInvalid},
		{"b", math.MaxUint64, 2, shm.ErrInvalid},
		{"b", 2, math.MaxUint64, shm.ErrInvalid},
		{"zz", 0, 1, shm.ErrNotFound},
	} {
		err := r.Check(c.name, c.offset, c.size)
		if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Errorf("Check(%s, %d, %d) = %v, want %v", c.name, c.offset, c.size, err, c.err)
		}
		if c.size > 1<<20 {
			continue
		}
		if err := r.ReadInto(c.name, c.offset, make([]byte, c.size)); !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Errorf("ReadInto(%s, %d, %d bytes) = %v, want %v", c.name, c.offset, c.size, err, c.err)
		}
		if err := r.Write(c.name, c.offset, make([]byte, c.size)); !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Errorf("Write(%s, %d, %d bytes) = %v, want %v", c.name, c.offset, c.size, err, c.err)
		}
	}
	if err := r.Unregister("b"); err != nil {
		t.Fatal(err)
	}
	if err := r.Unregister("b"); err != nil {
		t.Fatalf("unregistering an unknown name: %v", err)
	}
	if err := r.Check("b", 0, 1); !errors.Is(err, shm.ErrNotFound) {
		t.Fatalf("check after unregister: %v", err)
	}
	if !r.Has("a") || r.Has("b") {
		t.Fatalf("Has: a %v, b %v", r.Has("a"), r.Has("b"))
	}
	if err := r.Unregister(""); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Status(""); len(st) != 0 {
		t.Fatalf("status after unregistering all: %v", st)
	}
	// the handle opens again once closed
	if err := r.Register("a", h, 0, 8); err != nil {
		t.Fatal(err)
	}
}

// TestNoDriver: without libcuda registering says why, and the status
// lists no region.
func TestNoDriver(t *testing.T) {
	r := cudashm.New(cuda.Options{LibDir: t.TempDir()})
	err := r.Register("a", make([]byte, 64), 0, 16)
	if !errors.Is(err, shm.ErrNoCUDA) || !strings.Contains(err.Error(), "cannot open libcuda") {
		t.Fatalf("Register = %v, want shm.ErrNoCUDA naming libcuda", err)
	}
	if st, err := r.Status(""); err != nil || len(st) != 0 {
		t.Fatalf("Status = %v %v", st, err)
	}
	if err := r.Unregister(""); err != nil {
		t.Fatal(err)
	}
}

// TestUnregisterWhileCopying: unregistering waits for the copies in
// progress; copies after it fail cleanly (run with -race).
func TestUnregisterWhileCopying(t *testing.T) {
	r := cudashm.New(cuda.Options{LibDir: fakeLib(t)})
	h, _ := fakeHandle(t, "race", 1<<20)
	for round := range 20 {
		if err := r.Register("r", h, 0, 1<<20); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := make([]byte, 1<<20)
				for range 10 {
					var err error
					if i%2 == 0 {
						err = r.ReadInto("r", 0, b)
					} else {
						err = r.Write("r", 0, b)
					}
					if err != nil && !errors.Is(err, shm.ErrNotFound) {
						t.Error(err)
						return
					}
				}
			}()
		}
		if err := r.Unregister("r"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}

// TestSecondDevice: a region on GPU 1 of two opens in that device's
// primary context and shows its device_id.
func TestSecondDevice(t *testing.T) {
	t.Setenv("KILN_FAKE_GPUS", "2")
	r := cudashm.New(cuda.Options{LibDir: fakeLib(t)})
	defer r.Close()
	h, path := fakeHandle(t, "dev1", 64)
	if err := r.Register("a", h, 2, 64); !errors.Is(err, shm.ErrInvalid) || !strings.Contains(err.Error(), "the server has 2 CUDA device(s)") {
		t.Fatalf("device 2 of 2: %v", err)
	}
	if err := r.Register("a", h, 1, 64); err != nil {
		t.Fatal(err)
	}
	if st, err := r.Status("a"); err != nil || st[0] != (shm.CudaRegion{Name: "a", DeviceID: 1, ByteSize: 64}) {
		t.Fatalf("status: %+v %v", st, err)
	}
	if err := r.Write("a", 60, []byte("gpu1")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b[60:]) != "gpu1" {
		t.Fatalf("allocation: %q", b)
	}
}
