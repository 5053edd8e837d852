//go:build linux

package cuda

import (
	"errors"
	"syscall"
	"testing"
)

// TestCompileKeepsSignalHandlers: NVRTC 11.8 re-installs Go's handlers of
// SIGINT, SIGTERM and SIGXFSZ without SA_ONSTACK and SA_SIGINFO while it
// compiles; a SIGTERM after a compile then crashed kiln serve ("non-Go
// code set up signal handler without SA_ONSTACK flag") instead of draining
// it. Every disposition must be as before after opening NVRTC and
// compiling with it.
func TestCompileKeepsSignalHandlers(t *testing.T) {
	before := make([]sigaction, nsig)
	for s := 1; s < nsig; s++ {
		rtSigaction(s, nil, &before[s])
	}
	n, err := OpenNVRTC(Options{})
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("needs NVRTC (Debian: apt-get install libnvrtc11.2): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Compile("k.cu", `extern "C" __global__ void k(float *x) { x[threadIdx.x] = 1; }`, "--gpu-architecture=compute_70"); err != nil {
		t.Fatal(err)
	}
	for s := 1; s < nsig; s++ {
		var now sigaction
		rtSigaction(s, nil, &now)
		if now != before[s] {
			t.Errorf("signal %d (%v): disposition %x after NVRTC, was %x", s, syscall.Signal(s), now, before[s])
		}
	}
}

// TestKeepSignalsNested: overlapping callers restore once, at the end of
// the last.
func TestKeepSignalsNested(t *testing.T) {
	var orig sigaction
	rtSigaction(int(syscall.SIGXFSZ), nil, &orig)
	outer := KeepSignals()
	inner := KeepSignals()
	changed := orig
	changed[1] &^= 0x08000000 // SA_ONSTACK off, as NVRTC leaves it
	rtSigaction(int(syscall.SIGXFSZ), &changed, nil)
	inner()
	var now sigaction
	rtSigaction(int(syscall.SIGXFSZ), nil, &now)
	if now != changed {
		t.Errorf("the inner caller restored: %x", now)
	}
	outer()
	rtSigaction(int(syscall.SIGXFSZ), nil, &now)
	if now != orig {
		t.Errorf("after the outer caller: %x, want %x", now, orig)
	}
}
