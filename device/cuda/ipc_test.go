package cuda

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeIpcHandle returns the handle by which the fake libcuda maps size
// bytes of a new POSIX shared memory object (see testdata/fakecuda.c), and
// the object's file.
func fakeIpcHandle(t *testing.T, size int) (IpcMemHandle, string) {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("the fake libcuda's interprocess memory needs /dev/shm (POSIX shared memory)")
	}
	name := fmt.Sprintf("kiln-ipc-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	name = name[:min(len(name), 39)]
	path := filepath.Join("/dev/shm", name)
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	var h IpcMemHandle
	copy(h[:], "kilnipc1")
	binary.LittleEndian.PutUint64(h[8:], uint64(size))
	copy(h[16:56], name)
	for i := range 8 {
		h[56+i] = byte(0xc0 + i)
	}
	return h, path
}

// TestIpcFake runs the interprocess memory bindings against the fake
// libcuda, which checks that the handle passed by value arrives whole and
// in its place, and the flags in theirs.
func TestIpcFake(t *testing.T) {
	d, err := OpenDriver(Options{LibDir: fakeDriver(t)})
	if err != nil {
		t.Fatal(err)
	}
	h, path := fakeIpcHandle(t, 4096)
	const invalid = "CUDA_ERROR_INVALID_VALUE (1)"
	for _, c := range []struct {
		name  string
		edit  func(*IpcMemHandle)
		flags uint32
	}{
		{"no flags", nil, 0},
		{"other flags", nil, 2},
		{"magic changed", func(h *IpcMemHandle) { h[0] ^= 1 }, IpcLazyEnablePeerAccess},
		{"last byte changed", func(h *IpcMemHandle) { h[63] ^= 1 }, IpcLazyEnablePeerAccess},
		{"an eightbyte in the middle changed", func(h *IpcMemHandle) { h[60] ^= 0x80 }, IpcLazyEnablePeerAccess},
	} {
		bad := h
		if c.edit != nil {
			c.edit(&bad)
		}
		if _, err := d.IpcOpenMemHandle(bad, c.flags); !errors.Is(err, ErrCUDA) || !strings.Contains(err.Error(), "cuIpcOpenMemHandle: "+invalid) {
			t.Errorf("%s: IpcOpenMemHandle = %v, want %s", c.name, err, invalid)
		}
	}
	p, err := d.IpcOpenMemHandle(h, IpcLazyEnablePeerAccess)
	if err != nil {
		t.Fatal(err)
	}
	if base, size, err := d.MemAddressRange(p + 100); err != nil || base != p || size != 4096 {
		t.Errorf("MemAddressRange = %#x %d %v, want %#x 4096", base, size, err, p)
	}
	if got, err := d.IpcGetMemHandle(p + 8); err != nil || got != h {
		t.Errorf("IpcGetMemHandle = %x %v, want %x", got, err, h)
	}
	// the copies reach the shared object
	if err := d.MemcpyHtoD(p+10, []byte("written on the device")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.HasPrefix(b[10:], []byte("written on the device")) {
		t.Errorf("object after the copy: %q", b[:40])
	}
	got := make([]byte, 7)
	if err := d.MemcpyDtoH(got, p+18); err != nil || string(got) != "on the " {
		t.Errorf("MemcpyDtoH = %q %v", got, err)
	}
	if err := d.MemcpyDtoH(make([]byte, 2), p+4095); err == nil {
		t.Error("a copy past the end of the mapping: no error")
	}
	if err := d.IpcCloseMemHandle(p); err != nil {
		t.Fatal(err)
	}
	if err := d.IpcCloseMemHandle(p); !errors.Is(err, ErrCUDA) {
		t.Errorf("closing twice: %v", err)
	}
	if _, _, err := d.MemAddressRange(p); !errors.Is(err, ErrCUDA) {
		t.Errorf("MemAddressRange after close: %v", err)
	}
}
