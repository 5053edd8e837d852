package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/tensor"
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

// syscallBetween enters the kernel once (getppid): on a kernel with page
// table isolation and no PCID, that flushes the thread's TLB, as the
// system calls of a server's request path do between two runs.
func syscallBetween() { unix.Getppid() }

// pinnedCaller runs c's runs on two goroutines locked to OS threads pinned
// to CPUs 0 and 1 (hop) or both to CPU 0, alternating: with hop every run
// finds the arena's lines in the other core's caches. The hand-off (a
// channel send and receive each way) is counted, the same for both.
func pinnedCaller(c0, c1 *kiln.Context, in map[string]*tensor.Tensor, hop bool) (caller, func(), error) {
	ctxs := [2]*kiln.Context{c0, c1}
	type job struct {
		ctx  context.Context
		err  error
		done chan struct{}
	}
	var workers [2]chan *job
	var runs [2][]time.Duration
	for i := range workers {
		workers[i] = make(chan *job)
		cpu := 0
		if hop {
			cpu = i
		}
		c := ctxs[i]
		go func(jobs chan *job, runs *[]time.Duration) {
			runtime.LockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			unix.SchedSetaffinity(0, &set)
			for j := range jobs {
				t := time.Now()
				out, err := c.Run(j.ctx, in)
				*runs = append(*runs, time.Since(t))
				if err == nil && out[outputName] == nil {
					err = fmt.Errorf("engine: no output %s", outputName)
				}
				j.err = err
				close(j.done)
			}
		}(workers[i], &runs[i])
	}
	n := 0
	return func(ctx context.Context) error {
			j := &job{ctx: ctx, done: make(chan struct{})}
			workers[n%2] <- j
			n++
			<-j.done
			return j.err
		}, func() {
			for _, w := range workers {
				close(w)
			}
			all := slices.Concat(runs[0], runs[1])
			if len(all) > 0 {
				slices.Sort(all)
				fmt.Fprintf(os.Stderr, "reqpath: hop %v, contexts %v: the run alone: p50 %v, p90 %v (%d runs)\n", hop, c0 != c1, all[len(all)/2], all[len(all)*9/10], len(all))
			}
		}, nil
}
