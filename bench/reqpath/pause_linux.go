package main

import (
	"time"

	"golang.org/x/sys/unix"
)

// pause blocks the calling thread for d in the kernel (nanosleep), so that
// its core idles or runs other work meanwhile, as a server's core does
// between one client's requests. (time.Sleep may park the goroutine for a
// millisecond or more: the runtime's poller waits in milliseconds.)
func pause(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}
