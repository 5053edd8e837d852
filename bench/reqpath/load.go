package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kilnai/kiln/api"
	"github.com/kilnai/kiln/api/inference"
	"github.com/kilnai/kiln/tensor"
)

const (
	modelName  = "tinycnn"
	inputName  = "image"
	outputName = "probabilities"
	inputLen   = 3 * 32 * 32
	outputLen  = 10
)

// image returns a 1x3x32x32 image of uniform values in [0, 1).
func image(seed uint64) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 14))
	t := tensor.New(tensor.Float32, 1, 3, 32, 32)
	for i := range t.Float32s() {
		t.Float32s()[i] = rng.Float32()
	}
	return t
}

// jsonBody is the KServe v2 JSON request of img, numbers written as the
// shortest decimal that reads back as the float32 (as most clients do).
func jsonBody(img *tensor.Tensor) []byte {
	var b bytes.Buffer
	b.WriteString(`{"inputs":[{"name":"` + inputName + `","shape":[1,3,32,32],"datatype":"FP32","data":[`)
	for i, v := range img.Float32s() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(strconv.AppendFloat(nil, float64(v), 'g', -1, 32))
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}

// caller sends one request and reports its error; each load client has its
// own.
type caller func(ctx context.Context) error

// target is one server (or the engine alone) under measurement.
type target struct {
	name string
	// newCaller returns the caller of one client and a function that
	// releases it.
	newCaller func() (caller, func(), error)
	// pid is the server process whose CPU time is read (0: none).
	pid int
	// runs, when set, returns the model's statistics so far (kiln
	// serve's): the ratio of inferences to executions over a window is the
	// mean number of requests a run served, the batches the scheduler
	// formed; the success and compute_infer times per request are the
	// server's own view of a request's time in the model and of the
	// engine's run.
	runs func(ctx context.Context) (modelStats, error)
	// pause, when positive, is slept by each client's thread before each
	// request (pause), outside the request's time
	pause time.Duration
	// between, when set, is called by each client before each request,
	// outside the request's time
	between func()
}

// httpTarget posts body to url; a reply other than 200 is an error.
func httpTarget(name, url string, body []byte, pid int) target {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	client := &http.Client{Transport: tr}
	return target{name: name, pid: pid, newCaller: func() (caller, func(), error) {
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: status %d: %s", url, resp.StatusCode, b)
			}
			if !bytes.Contains(b, []byte(`"`+outputName+`"`)) {
				return fmt.Errorf("%s: reply without %s: %.200s", url, outputName, b)
			}
			return nil
		}, func() {}, nil
	}}
}

// grpcTarget calls ModelInfer on addr with req, one connection per client.
func grpcTarget(name, addr string, req *inference.ModelInferRequest, pid int) target {
	return target{name: name, pid: pid, newCaller: func() (caller, func(), error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		c := inference.NewGRPCInferenceServiceClient(conn)
		return func(ctx context.Context) error {
			resp, err := c.ModelInfer(ctx, req)
			if err != nil {
				return err
			}
			if len(resp.GetOutputs()) != 1 || len(resp.GetRawOutputContents()) != 1 || len(resp.GetRawOutputContents()[0]) != 4*outputLen {
				return fmt.Errorf("%s: unexpected reply %v", addr, resp)
			}
			return nil
		}, func() { conn.Close() }, nil
	}}
}

// grpcRequest is the ModelInfer request of img, its data as raw contents
// (as Triton's clients send it).
func grpcRequest(img *tensor.Tensor) (*inference.ModelInferRequest, error) {
	return api.NewInferRequest(modelName, map[string]*tensor.Tensor{inputName: img})
}

// result is one measurement.
type result struct {
	clients  int
	requests int
	p50, p99 time.Duration
	rps      float64
	// cpu is the server process's CPU time per request (0: unknown).
	cpu time.Duration
	// perRun is the mean number of requests (batch-1 inferences) a model
	// run served (0: unknown).
	perRun float64
	// inModel and compute are the server's own means per request over
	// the window (kiln serve's statistics; 0: unknown): the time from the
	// model's scheduler taking the request to its result (Triton's
	// success duration: queue, input, compute, output), and the model
	// run's alone (compute_infer).
	inModel, compute time.Duration
	// driver is the load driver's (this process's) CPU time per request
	// (0: unknown): with the server on the same cores, req/s is at most
	// cores / (cpu + driver), and below it by the time the cores idled.
	driver time.Duration
	// sched is the server process's scheduling per request over the
	// window (all its threads; zero: unknown): context switches, time
	// its threads waited runnable for a core, minor page faults.
	sched schedStats
}

// schedStats are a process's scheduling counts, summed over its threads
// (Linux /proc), or per request.
type schedStats struct {
	switches, faults float64
	// preempted are the involuntary switches among switches
	preempted float64
	runWait   time.Duration
	ok        bool
}

// procSched returns process pid's scheduling counts so far (ok false:
// unknown). Threads that ended are not counted: the servers' threads live
// as long as they do.
func procSched(pid int) schedStats {
	if pid <= 0 {
		return schedStats{}
	}
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return schedStats{}
	}
	var st schedStats
	for _, t := range tasks {
		if b, err := os.ReadFile(dir + "/" + t.Name() + "/status"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
					n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
					st.switches += n
					if strings.HasPrefix(k, "nonvoluntary") {
						st.preempted += n
					}
				}
			}
		}
		if b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				st.runWait += time.Duration(n)
			}
		}
		if b, err := os.ReadFile(dir + "/" + t.Name() + "/stat"); err == nil {
			if i := bytes.LastIndexByte(b, ')'); i >= 0 {
				if f := strings.Fields(string(b[i+1:])); len(f) > 7 {
					n, _ := strconv.ParseFloat(f[7], 64)
					st.faults += n
				}
			}
		}
	}
	st.ok = true
	return st
}

// per returns (b - a) / n.
func (b schedStats) per(a schedStats, n int) schedStats {
	if !a.ok || !b.ok || n == 0 {
		return schedStats{}
	}
	return schedStats{switches: (b.switches - a.switches) / float64(n), preempted: (b.preempted - a.preempted) / float64(n), faults: (b.faults - a.faults) / float64(n),
		runWait: (b.runWait - a.runWait) / time.Duration(n), ok: true}
}

// measure runs clients closed-loop clients on t: warm first, then dur
// measured; requests that start and end inside the measured window count.
func measure(ctx context.Context, t target, clients int, warm, dur time.Duration) (result, error) {
	callers := make([]caller, clients)
	for i := range callers {
		c, release, err := t.newCaller()
		if err != nil {
			return result{}, err
		}
		defer release()
		callers[i] = c
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		measuring atomic.Bool
		wg        sync.WaitGroup
		errOnce   sync.Once
		firstErr  error
	)
	lat := make([][]time.Duration, clients)
	for i, c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if t.pause > 0 {
					pause(t.pause)
				}
				if t.between != nil {
					t.between()
				}
				in := measuring.Load()
				start := time.Now()
				err := c(ctx)
				d := time.Since(start)
				if err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				if in && measuring.Load() {
					lat[i] = append(lat[i], d)
				}
			}
		}()
	}
	sleep := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	sleep(warm)
	// the statistics are read outside the CPU window (the calls cost the
	// server a little)
	var st0 modelStats
	runsErr := errors.New("unknown")
	if t.runs != nil {
		st0, runsErr = t.runs(ctx)
	}
	cpu0, self0, sch0 := cpuTime(t.pid), cpuTime(os.Getpid()), procSched(t.pid)
	measuring.Store(true)
	start := time.Now()
	sleep(dur)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1, self1, sch1 := cpuTime(t.pid), cpuTime(os.Getpid()), procSched(t.pid)
	var perRun float64
	var inModel, compute time.Duration
	if runsErr == nil {
		if st1, err := t.runs(ctx); err == nil && st1.executions > st0.executions {
			perRun = float64(st1.inferences-st0.inferences) / float64(st1.executions-st0.executions)
			if n := st1.successes - st0.successes; n > 0 {
				inModel = time.Duration((st1.successNs - st0.successNs) / n)
				compute = time.Duration((st1.computeNs - st0.computeNs) / n)
			}
		}
	}
	cancel()
	wg.Wait()
	if firstErr != nil {
		return result{}, fmt.Errorf("%s: %w", t.name, firstErr)
	}
	if err := context.Cause(ctx); err != nil && ctx.Err() != context.Canceled {
		return result{}, err
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return result{}, fmt.Errorf("%s: no request completed in %v", t.name, dur)
	}
	slices.Sort(all)
	r := result{clients: clients, requests: len(all), p50: all[len(all)/2], p99: all[len(all)*99/100],
		rps: float64(len(all)) / elapsed.Seconds(), perRun: perRun, inModel: inModel, compute: compute}
	if cpu0 >= 0 && cpu1 >= 0 {
		r.cpu = (cpu1 - cpu0) / time.Duration(len(all))
	}
	if t.pid != os.Getpid() {
		r.sched = sch1.per(sch0, len(all))
	}
	if self0 >= 0 && self1 >= 0 && t.pid != os.Getpid() {
		r.driver = (self1 - self0) / time.Duration(len(all))
	}
	return r, nil
}

// cpuTime returns the user and system CPU time of process pid so far (-1:
// unknown), from /proc (Linux).
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// the command name, in parentheses, may hold spaces: fields count
	// from the last ')'
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// measureRate sends requests to t at a fixed rate (requests/s, evenly
// spaced, open loop) with at most clients in flight: warm first, then dur
// measured. Latency counts from each request's start (a request that waits
// for a free client starts late); cpu is the server process's CPU time over
// the window divided by the requests sent in it.
func measureRate(ctx context.Context, t target, rate float64, clients int, warm, dur time.Duration) (result, error) {
	free := make(chan caller, clients)
	for range clients {
		c, release, err := t.newCaller()
		if err != nil {
			return result{}, err
		}
		defer release()
		free <- c
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	interval := time.Duration(float64(time.Second) / rate)
	begin := time.Now()
	measureFrom, measureTo := begin.Add(warm), begin.Add(warm+dur)
	var cpu0 time.Duration = -1
	sent := 0
	for i := 0; ctx.Err() == nil; i++ {
		at := begin.Add(time.Duration(i) * interval)
		if !at.Before(measureTo) {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if cpu0 < 0 && !at.Before(measureFrom) {
			cpu0 = cpuTime(t.pid)
		}
		var c caller
		select {
		case c = <-free:
		case <-ctx.Done():
		}
		if c == nil {
			break
		}
		counted := !at.Before(measureFrom)
		if counted {
			sent++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			err := c(ctx)
			d := time.Since(start)
			free <- c
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil && ctx.Err() == nil {
					firstErr = err
					cancel()
				}
				return
			}
			if counted {
				lat = append(lat, d)
			}
		}()
	}
	wg.Wait()
	cpu1 := cpuTime(t.pid)
	if firstErr != nil {
		return result{}, fmt.Errorf("%s at %.0f/s: %w", t.name, rate, firstErr)
	}
	if err := ctx.Err(); err != nil && context.Cause(ctx) != context.Canceled {
		return result{}, err
	}
	if len(lat) == 0 {
		return result{}, fmt.Errorf("%s: no request completed at %.0f/s in %v", t.name, rate, dur)
	}
	slices.Sort(lat)
	r := result{clients: clients, requests: len(lat), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		rps: float64(len(lat)) / dur.Seconds()}
	if cpu0 >= 0 && cpu1 >= 0 {
		r.cpu = (cpu1 - cpu0) / time.Duration(sent)
	}
	return r, nil
}

// modelStats is what a target's runs function reads of a model's
// statistics (sums over its versions).
type modelStats struct {
	inferences, executions uint64
	// successes counts the requests that succeeded, successNs their
	// time in the model, computeNs the time of the runs they were part
	// of (Triton's inference_stats success and compute_infer)
	successes, successNs, computeNs uint64
}

// statsRuns returns a target's runs function: modelName's statistics
// (every version) from the gRPC server at addr, on one connection of its
// own.
func statsRuns(addr string) (func(ctx context.Context) (modelStats, error), func(), error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	c := inference.NewGRPCInferenceServiceClient(conn)
	return func(ctx context.Context) (modelStats, error) {
		resp, err := c.ModelStatistics(ctx, &inference.ModelStatisticsRequest{Name: modelName})
		if err != nil {
			return modelStats{}, err
		}
		var st modelStats
		for _, m := range resp.GetModelStats() {
			st.inferences += m.GetInferenceCount()
			st.executions += m.GetExecutionCount()
			is := m.GetInferenceStats()
			st.successes += is.GetSuccess().GetCount()
			st.successNs += is.GetSuccess().GetNs()
			st.computeNs += is.GetComputeInfer().GetNs()
		}
		return st, nil
	}, func() { conn.Close() }, nil
}

// flushPages is memory flushBetween touches: 4096 pages, one byte each.
var flushPages = make([]byte, 4096*4096)

// flushBetween touches one byte in each of 4096 pages: it evicts the
// thread's TLB entries (and 256 KB of cache lines) without a system call.
func flushBetween() {
	for i := 0; i < len(flushPages); i += 4096 {
		flushPages[i]++
	}
}
