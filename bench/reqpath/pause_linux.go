package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"
	"unsafe"

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
// to the first two CPUs the process may use (hop) or both to the first,
// alternating (c0's runs, then c1's): with hop every run
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
	// the first two CPUs the process may run on (taskset's), not 0 and 1
	cpus := []int{0, 1}
	var allowed unix.CPUSet
	if unix.SchedGetaffinity(0, &allowed) == nil {
		cpus = cpus[:0]
		for c := 0; c < 1024 && len(cpus) < 2; c++ {
			if allowed.IsSet(c) {
				cpus = append(cpus, c)
			}
		}
		if len(cpus) == 1 {
			cpus = append(cpus, cpus[0])
		}
	}
	for i := range workers {
		workers[i] = make(chan *job)
		cpu := cpus[0]
		if hop {
			cpu = cpus[i]
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

// runDiag is one run of the engine in bare-grpc-engine-diag's handler:
// how long it took, whether its thread was switched out meanwhile
// (getrusage of the thread), and whether it ran on another CPU than the
// run before it (getcpu).
type runDiag struct {
	d                          time.Duration
	switched, preempted, moved bool
}

// diagRun runs run on the calling goroutine locked to its thread and
// tells what happened to the thread; lastCPU is the CPU of the run
// before (updated).
func diagRun(lastCPU *int, run func()) runDiag {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r0, r1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &r0)
	var c uint32
	unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&c)), 0, 0)
	t := time.Now()
	run()
	d := time.Since(t)
	unix.Getrusage(unix.RUSAGE_THREAD, &r1)
	moved := *lastCPU >= 0 && int(c) != *lastCPU
	*lastCPU = int(c)
	return runDiag{d: d, switched: r1.Nvcsw > r0.Nvcsw, preempted: r1.Nivcsw > r0.Nivcsw, moved: moved}
}

// diagReport writes the runs' medians by what happened to their thread.
func diagReport(w io.Writer, runs []runDiag) {
	groups := map[string][]time.Duration{}
	for _, r := range runs {
		k := "same CPU, not switched out"
		switch {
		case r.switched:
			k = "blocked during the run (voluntary switch)"
		case r.preempted:
			k = "preempted during the run"
		case r.moved:
			k = "another CPU than the run before, not switched out"
		}
		groups[k] = append(groups[k], r.d)
	}
	for _, k := range []string{"same CPU, not switched out", "another CPU than the run before, not switched out", "preempted during the run", "blocked during the run (voluntary switch)"} {
		g := groups[k]
		if len(g) == 0 {
			continue
		}
		slices.Sort(g)
		fmt.Fprintf(w, "reqpath: bare-grpc-engine-diag: %s: %d runs (%.0f%%), p50 %v, p90 %v\n", k, len(g), 100*float64(len(g))/float64(len(runs)), g[len(g)/2], g[len(g)*9/10])
	}
}
