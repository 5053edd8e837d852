package cuda

import (
	"sync"
	"syscall"
	"unsafe"
)

// NVRTC (11.8 at least) re-installs the handlers of SIGINT, SIGTERM and
// SIGXFSZ while it compiles, and puts Go's handler back without
// SA_ONSTACK and SA_SIGINFO: the next SIGTERM (Kubernetes stopping a pod)
// then crashes the process ("non-Go code set up signal handler without
// SA_ONSTACK flag") instead of draining it. KeepSignals saves every
// signal's disposition before such a call and restores it afterwards;
// calls that overlap share one saved set, taken by the first and restored
// by the last.

// sigaction is the kernel's struct sigaction on amd64 and arm64 (handler,
// flags, restorer, mask), read and written back unchanged.
type sigaction [4]uint64

const nsig = 65 // signals 1..64

var sigGuard struct {
	sync.Mutex
	depth int
	saved [nsig]sigaction
	ok    [nsig]bool
}

func rtSigaction(sig int, act, old *sigaction) bool {
	_, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(act)), uintptr(unsafe.Pointer(old)), 8, 0, 0)
	return e == 0
}

// KeepSignals saves the signal dispositions; the function it returns
// restores those that changed meanwhile. Code that calls into CUDA's
// libraries (NVRTC directly, or cuDNN's run-time fusion, which uses it)
// wraps the calls in it.
func KeepSignals() (restore func()) {
	g := &sigGuard
	g.Lock()
	if g.depth == 0 {
		for s := 1; s < nsig; s++ {
			g.ok[s] = s != int(syscall.SIGKILL) && s != int(syscall.SIGSTOP) && rtSigaction(s, nil, &g.saved[s])
		}
	}
	g.depth++
	g.Unlock()
	return func() {
		g.Lock()
		defer g.Unlock()
		if g.depth--; g.depth > 0 {
			return
		}
		for s := 1; s < nsig; s++ {
			var now sigaction
			if g.ok[s] && rtSigaction(s, nil, &now) && now != g.saved[s] {
				rtSigaction(s, &g.saved[s], nil)
			}
		}
	}
}
