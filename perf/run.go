package perf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnai/kiln/tensor"
)

// Config is one run of the load generator.
type Config struct {
	// Model and Version name what is measured (an empty Version lets the
	// server choose).
	Model, Version string
	// URL is the server's host:port (HTTP for http and ws, gRPC for grpc).
	URL string
	// Protocol is HTTP, GRPC or WebSocket.
	Protocol string
	// Binary sends HTTP requests with the binary data extension (raw
	// tensor bytes after a JSON header) and asks for binary outputs.
	Binary bool
	// Streaming sends gRPC requests over ModelStreamInfer streams, one per
	// worker, instead of unary ModelInfer calls.
	Streaming bool
	// Token is sent as "Authorization: Bearer TOKEN" when set.
	Token string
	// TLS, when set, connects with TLS (HTTPS, gRPC over TLS, wss); a URL
	// starting https:// does too, trusting the system's certificates.
	TLS *tls.Config

	// Concurrency, when set, runs the concurrency mode: for each value, that
	// many workers each send a request as soon as their last one answered.
	Concurrency *Range
	// RequestRate, when set, runs the request-rate mode: for each value,
	// requests per second spaced by Distribution, sent by up to MaxThreads
	// workers.
	RequestRate  *Range
	Distribution Distribution
	MaxThreads   int

	// Window is the length of one measurement window.
	Window time.Duration
	// StabilityPercentage is how far (percent of their average) the
	// throughput and p95 latency of StableWindows consecutive windows may
	// be apart for the measurement to be stable. 0 asks for no stability:
	// every step runs MaxTrials windows (a run of a fixed length).
	StabilityPercentage float64
	// MaxTrials bounds the number of windows per step: a step that is not
	// stable by then reports its last StableWindows windows, marked
	// unstable.
	MaxTrials int
	// Timeout bounds each request.
	Timeout time.Duration

	// Inputs says what is sent.
	Inputs InputOptions

	// Progress, when set, receives a progress line after each window;
	// ProgressInPlace rewrites one line (a terminal) instead of printing a
	// line per window.
	Progress        io.Writer
	ProgressInPlace bool
	// Seed makes Poisson schedules and random inputs repeatable.
	Seed uint64

	// NoServerStats measures from the client's side only: the server's
	// statistics endpoint is not read (a gateway in front of several
	// servers answers it for one of them).
	NoServerStats bool
	// Stop, when closed, ends the run early: the load stops, the requests
	// in flight finish, and the report covers the windows measured so far
	// (Report.Interrupted).
	Stop <-chan struct{}
}

// Window is one measurement window of a step.
type Window struct {
	Duration time.Duration `json:"duration_ns"`
	// Requests and Errors count the requests that ended in the window.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Inferences counts the inferences of those requests (their batch
	// sizes added up); Throughput is inferences per second.
	Inferences int64         `json:"inferences"`
	Throughput float64       `json:"throughput"`
	P95        time.Duration `json:"p95_ns"`
	P99        time.Duration `json:"p99_ns"`
	// ServerThroughput is the server's inference count over the window, per
	// second.
	ServerThroughput float64 `json:"server_throughput"`
}

// Server is the server's side of a step, from the difference of its
// statistics between the start and the end of the measured windows: the
// requests it answered, and its time per request.
type Server struct {
	Requests   uint64  `json:"requests"`
	Failed     uint64  `json:"failed"`
	Inferences uint64  `json:"inferences"`
	Executions uint64  `json:"executions"`
	Throughput float64 `json:"throughput"`
	// Average time per successful request.
	Total         time.Duration `json:"total_ns"`
	Queue         time.Duration `json:"queue_ns"`
	ComputeInput  time.Duration `json:"compute_input_ns"`
	ComputeInfer  time.Duration `json:"compute_infer_ns"`
	ComputeOutput time.Duration `json:"compute_output_ns"`
}

// Step is the result of one concurrency or request rate.
type Step struct {
	Concurrency int     `json:"concurrency,omitempty"`
	RequestRate float64 `json:"request_rate,omitempty"`
	// Stable reports whether the last StableWindows windows agreed; the
	// figures below are over those windows.
	Stable  bool     `json:"stable"`
	Windows []Window `json:"windows"`
	// Duration is the length of the measured windows.
	Duration time.Duration `json:"duration_ns"`
	// Requests counts the successful requests of the measured windows.
	Requests int64 `json:"requests"`
	// Inferences counts their inferences (batch sizes added up);
	// Throughput is inferences per second over the measured windows.
	Inferences int64     `json:"inferences"`
	Throughput float64   `json:"throughput"`
	Latency    Latencies `json:"latency"`
	// Errors counts the failed requests of the measured windows by kind.
	Errors map[string]int64 `json:"errors"`
	// Delayed counts (request-rate mode) requests sent later than their
	// schedule because every worker was busy.
	Delayed int64  `json:"delayed,omitempty"`
	Server  Server `json:"server"`
}

// Report is a whole run.
type Report struct {
	Model        string        `json:"model"`
	Version      string        `json:"version,omitempty"`
	URL          string        `json:"url"`
	Protocol     string        `json:"protocol"`
	Binary       bool          `json:"binary,omitempty"`
	Streaming    bool          `json:"streaming,omitempty"`
	Mode         string        `json:"mode"` // "concurrency" or "request_rate"
	Distribution Distribution  `json:"distribution,omitempty"`
	BatchSize    int           `json:"batch_size"`
	Window       time.Duration `json:"window_ns"`
	Stability    float64       `json:"stability_percentage"`
	Steps        []Step        `json:"steps"`
	// Requests and Errors count every request of the run, measured or not;
	// ServerRequests is the server's count of successful requests over the
	// run (its statistics before the first and after the last request).
	Requests       int64  `json:"requests"`
	Errors         int64  `json:"errors"`
	ServerRequests uint64 `json:"server_requests"`
	// ErrorKinds counts every failed request of the run by kind.
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	// ServerStatsError says why the server's statistics could not be read
	// (the Server figures are then zero).
	ServerStatsError string `json:"server_stats_error,omitempty"`
	// Interrupted: Config.Stop ended the run; its last step holds the
	// windows measured until then, unstable, and the steps after it are
	// missing.
	Interrupted bool `json:"interrupted,omitempty"`
}

func (c *Config) check() error {
	if c.Model == "" {
		return fmt.Errorf("%w: no model", ErrConfig)
	}
	if (c.Concurrency == nil) == (c.RequestRate == nil) {
		return fmt.Errorf("%w: give a concurrency range or a request rate range, not both", ErrConfig)
	}
	if c.RequestRate != nil {
		if _, err := ParseDistribution(string(c.Distribution)); err != nil {
			return err
		}
		if c.MaxThreads < 1 {
			return fmt.Errorf("%w: max threads %d: want at least 1", ErrConfig, c.MaxThreads)
		}
	}
	if c.Concurrency != nil && c.Concurrency.Start < 1 {
		return fmt.Errorf("%w: concurrency %g: want at least 1", ErrConfig, c.Concurrency.Start)
	}
	if c.Window <= 0 {
		return fmt.Errorf("%w: measurement window %v: want a positive duration", ErrConfig, c.Window)
	}
	if c.StabilityPercentage < 0 {
		return fmt.Errorf("%w: stability percentage %g: want a positive number, or 0 for none", ErrConfig, c.StabilityPercentage)
	}
	if c.MaxTrials < StableWindows {
		return fmt.Errorf("%w: max trials %d: want at least %d", ErrConfig, c.MaxTrials, StableWindows)
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Inputs.BatchSize < 1 {
		return fmt.Errorf("%w: batch size %d: want at least 1", ErrConfig, c.Inputs.BatchSize)
	}
	return nil
}

// Run measures the model at each concurrency or request rate of cfg and
// returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	tc := targetConfig{url: cfg.URL, model: cfg.Model, version: cfg.Version, token: cfg.Token,
		binary: cfg.Binary, streaming: cfg.Streaming, tls: cfg.TLS}
	if cfg.Concurrency != nil {
		tc.conns = int(cfg.Concurrency.End)
	} else {
		tc.conns = cfg.MaxThreads
	}
	tg, err := newTarget(ctx, tc, cfg.Protocol)
	if err != nil {
		return nil, err
	}
	defer tg.close()
	md, err := tg.metadata(ctx)
	if err != nil {
		return nil, err
	}
	sets, err := makeInputs(md, cfg.Inputs)
	if err != nil {
		return nil, err
	}
	if err := tg.prepare(sets); err != nil {
		return nil, err
	}
	rep := &Report{Model: cfg.Model, Version: cfg.Version, URL: cfg.URL, Protocol: cfg.Protocol,
		Binary: cfg.Binary && cfg.Protocol == HTTP, Streaming: cfg.Streaming && cfg.Protocol == GRPC,
		BatchSize: cfg.Inputs.BatchSize, Window: cfg.Window, Stability: cfg.StabilityPercentage}
	// A server without the statistics endpoint (a gateway in front of
	// several, say) is measured from the client's side only.
	var first serverStats
	if !cfg.NoServerStats {
		first, err = tg.stats(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			rep.ServerStatsError = err.Error()
		}
	}
	r := &runner{cfg: cfg, tg: tg, noStats: cfg.NoServerStats || err != nil, sets: sets, batches: batchSizes(md, sets), rec: newRecorder()}
	var steps []Step
	if cfg.Concurrency != nil {
		rep.Mode = "concurrency"
		for _, v := range cfg.Concurrency.Values() {
			steps = append(steps, Step{Concurrency: int(v)})
		}
	} else {
		rep.Mode, rep.Distribution = "request_rate", cfg.Distribution
		for _, v := range cfg.RequestRate.Values() {
			steps = append(steps, Step{RequestRate: v})
		}
	}
	for _, st := range steps {
		err := r.step(ctx, &st)
		if err == errStopped {
			rep.Interrupted = true
			if len(st.Windows) > 0 {
				rep.Steps = append(rep.Steps, st)
			}
			break
		}
		if err != nil {
			return nil, err
		}
		rep.Steps = append(rep.Steps, st)
	}
	last, err := r.stats(ctx)
	if err != nil {
		return nil, err
	}
	rep.Requests, rep.Errors = r.rec.ok.Load(), r.rec.failed.Load()
	rep.ErrorKinds = r.rec.kinds()
	rep.ServerRequests = last.sub(first).Success
	if cfg.Progress != nil && cfg.ProgressInPlace {
		fmt.Fprintln(cfg.Progress)
	}
	return rep, nil
}

// record is one finished request.
type record struct {
	end   time.Time
	lat   time.Duration
	batch int
	kind  string // "" for a success, else the error's kind
}

// recorder collects the requests that finished in the current window.
type recorder struct {
	mu         sync.Mutex
	recs       []record
	errKinds   map[string]int64 // every failed request of the run, by kind
	ok, failed atomic.Int64
	delayed    atomic.Int64
}

func newRecorder() *recorder { return &recorder{errKinds: map[string]int64{}} }

// kinds returns a copy of the run's failures by kind (nil for none).
func (r *recorder) kinds() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errKinds) == 0 {
		return nil
	}
	out := make(map[string]int64, len(r.errKinds))
	for k, v := range r.errKinds {
		out[k] = v
	}
	return out
}

func (r *recorder) add(end time.Time, d time.Duration, batch int, err error) {
	rec := record{end: end, lat: d, batch: batch}
	if err != nil {
		rec.kind = ErrorKind(err)
		r.failed.Add(1)
	} else {
		r.ok.Add(1)
	}
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	if rec.kind != "" {
		r.errKinds[rec.kind]++
	}
	r.mu.Unlock()
}

// split returns the requests that finished by at and keeps the later ones
// for the next window.
func (r *recorder) split(at time.Time) []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out, keep []record
	for _, rec := range r.recs {
		if rec.end.After(at) {
			keep = append(keep, rec)
		} else {
			out = append(out, rec)
		}
	}
	r.recs = append(make([]record, 0, len(out)+len(keep)), keep...)
	return out
}

type runner struct {
	cfg  Config
	tg   target
	sets []map[string]*tensor.Tensor
	// batches is each set's batch size: the first dimension of its first
	// input when the model's is variable, else 1.
	batches []int
	rec     *recorder
	noStats bool // the server has no statistics endpoint
}

// statsAt returns the server's statistics and the middle of the call, the
// moment they stand for.
func (r *runner) statsAt(ctx context.Context) (serverStats, time.Time, error) {
	a := time.Now()
	s, err := r.stats(ctx)
	b := time.Now()
	return s, a.Add(b.Sub(a) / 2), err
}

// stats returns the server's statistics, or zeros for a server without
// them.
func (r *runner) stats(ctx context.Context) (serverStats, error) {
	if r.noStats {
		return serverStats{}, nil
	}
	return r.tg.stats(ctx)
}

// step runs the load of st until its windows are stable or MaxTrials
// windows have passed, then stops the load and waits for every request
// sent.
func (r *runner) step(ctx context.Context, st *Step) error {
	var stop atomic.Bool
	done := make(chan struct{}) // closed with stop set: the schedule's waits end
	var wg sync.WaitGroup
	n := st.Concurrency
	if st.RequestRate > 0 {
		n = r.cfg.MaxThreads
	}
	conns := make([]conn, 0, n)
	defer func() {
		stop.Store(true)
		close(done)
		wg.Wait()
		for _, c := range conns {
			c.close()
		}
	}()
	for range n {
		c, err := r.tg.open(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	send := func(c conn, set int) {
		rctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		t := time.Now()
		err := c.do(rctx, set)
		end := time.Now()
		r.rec.add(end, end.Sub(t), r.batches[set], err)
		cancel()
	}
	if st.RequestRate == 0 {
		for i, c := range conns {
			wg.Go(func() {
				for set := i % len(r.sets); !stop.Load() && ctx.Err() == nil; set = (set + 1) % len(r.sets) {
					send(c, set)
				}
			})
		}
	} else {
		due := make(chan time.Time, n)
		late := max(time.Millisecond, time.Duration(float64(time.Second)/st.RequestRate/10))
		for i, c := range conns {
			wg.Go(func() {
				set := i % len(r.sets)
				for d := range due {
					if stop.Load() {
						continue
					}
					if w := time.Until(d); w > 0 {
						time.Sleep(w)
					} else if -w > late {
						r.rec.delayed.Add(1)
					}
					send(c, set)
					set = (set + 1) % len(r.sets)
				}
			})
		}
		sched := NewSchedule(st.RequestRate, r.cfg.Distribution, r.cfg.Seed)
		wg.Go(func() {
			defer close(due)
			next := time.Now()
			tm := time.NewTimer(0)
			defer tm.Stop()
			for !stop.Load() {
				next = next.Add(sched.Next())
				// hand the request over ahead of time: the worker waits
				// for its due time, so that it is sent on time
				if w := time.Until(next) - 2*time.Millisecond; w > 0 {
					tm.Reset(w)
					select {
					case <-tm.C:
					case <-ctx.Done():
						return
					case <-done:
						return
					}
				}
				select {
				case due <- next:
				case <-ctx.Done():
					return
				case <-done:
					return
				}
			}
		})
	}
	return r.measure(ctx, st)
}

// errStopped: Config.Stop was closed during a step.
var errStopped = errors.New("perf: stopped")

// measure runs windows until stable and fills st; when Config.Stop is
// closed it fills st with the windows so far and returns errStopped.
func (r *runner) measure(ctx context.Context, st *Step) error {
	// A window's edge is the middle of the statistics call that closes it:
	// requests that finished before it count in the window on both sides.
	s0, t0, err := r.statsAt(ctx)
	if err != nil {
		return err
	}
	r.rec.split(t0)
	r.rec.delayed.Store(0)
	type win struct {
		lat  []time.Duration
		inf  int64
		errs map[string]int64
		srv  serverStats
	}
	var wins []win
	tm := time.NewTimer(r.cfg.Window)
	defer tm.Stop()
	stopped := false
	for trial := 1; ; trial++ {
		select {
		case <-tm.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.cfg.Stop: // nil without Stop: never
			stopped = true
		}
		if stopped {
			break // the window in progress is not counted
		}
		s1, t1, err := r.statsAt(ctx)
		if err != nil {
			return err
		}
		var lat []time.Duration
		var inf int64
		errs := map[string]int64{}
		for _, rec := range r.rec.split(t1) {
			if rec.kind != "" {
				errs[rec.kind]++
				continue
			}
			lat = append(lat, rec.lat)
			inf += int64(rec.batch)
		}
		tm.Reset(r.cfg.Window)
		d := t1.Sub(t0)
		sum := Summarize(lat)
		srv := s1.sub(s0)
		var nerr int64
		for _, v := range errs {
			nerr += v
		}
		w := Window{Duration: d, Requests: int64(len(lat)), Inferences: inf, Errors: nerr, P95: sum.P95, P99: sum.P99,
			Throughput:       float64(inf) / d.Seconds(),
			ServerThroughput: float64(srv.InferenceCount) / d.Seconds()}
		st.Windows = append(st.Windows, w)
		wins = append(wins, win{lat, inf, errs, srv})
		st.Stable = r.cfg.StabilityPercentage > 0 && Stable(st.Windows, r.cfg.StabilityPercentage)
		r.progress(st, trial, w)
		if st.Stable || trial >= r.cfg.MaxTrials {
			break
		}
		s0, t0 = s1, t1
	}
	if len(wins) == 0 {
		return errStopped
	}
	// the result: the last StableWindows windows together (fewer when
	// stopped before)
	var all []time.Duration
	var inf int64
	var srv serverStats
	st.Errors = map[string]int64{}
	n := min(len(wins), StableWindows)
	for i, w := range wins[len(wins)-n:] {
		all = append(all, w.lat...)
		inf += w.inf
		for k, v := range w.errs {
			st.Errors[k] += v
		}
		srv = addStats(srv, w.srv)
		st.Duration += st.Windows[len(st.Windows)-n+i].Duration
	}
	st.Latency = Summarize(all)
	st.Requests = int64(len(all))
	secs := st.Duration.Seconds()
	st.Inferences = inf
	st.Throughput = float64(inf) / secs
	st.Delayed = r.rec.delayed.Load()
	st.Server = Server{Requests: srv.Success, Failed: srv.Fail, Inferences: srv.InferenceCount,
		Executions: srv.ExecutionCount, Throughput: float64(srv.InferenceCount) / secs}
	if srv.Success > 0 {
		per := func(ns uint64) time.Duration { return time.Duration(ns / srv.Success) }
		st.Server.Total, st.Server.Queue = per(srv.SuccessNs), per(srv.QueueNs)
		st.Server.ComputeInput, st.Server.ComputeInfer, st.Server.ComputeOutput = per(srv.InputNs), per(srv.InferNs), per(srv.OutputNs)
	}
	if stopped {
		return errStopped
	}
	return nil
}

func addStats(a, b serverStats) serverStats {
	return serverStats{
		Success: a.Success + b.Success, Fail: a.Fail + b.Fail, SuccessNs: a.SuccessNs + b.SuccessNs,
		QueueNs: a.QueueNs + b.QueueNs, InputNs: a.InputNs + b.InputNs, InferNs: a.InferNs + b.InferNs,
		OutputNs: a.OutputNs + b.OutputNs, InferenceCount: a.InferenceCount + b.InferenceCount,
		ExecutionCount: a.ExecutionCount + b.ExecutionCount,
	}
}

func (r *runner) progress(st *Step, trial int, w Window) {
	if r.cfg.Progress == nil {
		return
	}
	load := fmt.Sprintf("concurrency %d", st.Concurrency)
	if st.RequestRate > 0 {
		load = fmt.Sprintf("request rate %g/s", st.RequestRate)
	}
	line := fmt.Sprintf("%s: window %d/%d: %.1f infer/s, p95 %s, p99 %s, %d errors%s", load, trial, r.cfg.MaxTrials,
		w.Throughput, ms(w.P95), ms(w.P99), w.Errors, map[bool]string{true: ", stable", false: ""}[st.Stable])
	if r.cfg.ProgressInPlace {
		fmt.Fprintf(r.cfg.Progress, "\r%s\033[K", line)
	} else {
		fmt.Fprintln(r.cfg.Progress, line)
	}
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

// batchSizes is the batch size of each input set: the first dimension of
// the set's tensor for the model's first input when the model's first
// dimension is variable (a batching model), else 1.
func batchSizes(md []inputMeta, sets []map[string]*tensor.Tensor) []int {
	out := make([]int, len(sets))
	for i, set := range sets {
		out[i] = 1
		if len(md) > 0 && len(md[0].Shape) > 0 && md[0].Shape[0] < 0 {
			if t := set[md[0].Name]; t != nil && len(t.Shape) > 0 {
				out[i] = max(t.Shape[0], 1)
			}
		}
	}
	return out
}
