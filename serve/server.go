package serve

import (
	"context"
	"errors"
	"fmt"
	"github.com/kilnai/kiln/device/cpu"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/serve/cache"
	"github.com/kilnai/kiln/serve/logging"
	"github.com/kilnai/kiln/serve/record"
	"github.com/kilnai/kiln/serve/repository"
	"github.com/kilnai/kiln/serve/scheduler"
	"github.com/kilnai/kiln/serve/shm"
	"github.com/kilnai/kiln/tensor"
)

var (
	// ErrNotFound is returned for an unknown model or version.
	ErrNotFound = errors.New("serve: not found")
	// ErrNotReady is returned for a model that is not loaded, or when the
	// server is shutting down.
	ErrNotReady = errors.New("serve: not ready")
	// ErrInvalid is returned for a request that does not fit the model.
	ErrInvalid = errors.New("serve: invalid request")
	// ErrQueueFull is returned when the model's queue is full.
	ErrQueueFull = scheduler.ErrQueueFull
	// ErrTimeout is returned when a request timed out in the queue.
	ErrTimeout = scheduler.ErrTimeout
	// ErrUnsupported is returned for an operation the server cannot do, such
	// as loading a model without a repository.
	ErrUnsupported = errors.New("serve: unsupported")
	// ErrWarmup is returned when a model's warmup (model_warmup) fails; the
	// model is then not served.
	ErrWarmup = errors.New("serve: model warmup failed")
)

// Times are the durations of one request's phases, as Triton measures them.
type Times struct {
	// Total is from the request's arrival at the server core to its result.
	Total time.Duration
	// Queue is the time waiting for an instance.
	Queue time.Duration
	// ComputeInput prepares the batch's inputs, ComputeInfer runs the model,
	// ComputeOutput splits the batch's outputs (each the whole batch's time).
	ComputeInput, ComputeInfer, ComputeOutput time.Duration
}

// Observer receives per-request and per-run measurements (for metrics). Its
// methods must be safe for concurrent calls.
type Observer interface {
	// RequestDone reports a finished request; reason is "" on success, when
	// only t.Total is set on failure.
	RequestDone(model, version string, batch int, reason string, t Times)
	// Executed reports one model run of a batch of requests.
	Executed(model, version string, requests, batchSize int, compute time.Duration)
}

// LoadObserver is an optional capability of an Observer: it is told how
// long each model took to load (warmup included).
type LoadObserver interface {
	ModelLoaded(model string, took time.Duration)
}

// SwitchObserver is an optional capability of an Observer: it is told of
// each execution-context switch, a batch of a model version run on another
// instance than the version's previous batch.
type SwitchObserver interface {
	ContextSwitched(model, version string)
}

// Options configures a Server.
type Options struct {
	// Repository is the model repository folder; empty for none.
	Repository string
	// Logger receives load and unload messages; nil discards them.
	Logger *slog.Logger
	// Observer receives measurements; nil for none.
	Observer Observer
	// WrapRunner, when set, wraps each model version's runner (for
	// instrumentation, fault injection and tests).
	WrapRunner func(model string, r scheduler.Runner) scheduler.Runner
	// Loader loads each version's model file from the repository (kiln
	// serve builds engines through its plan cache); nil loads the graph as
	// it is (kiln.Load).
	Loader repository.ModelLoader
	// ContextLoader, when set, replaces Loader with a loader given the
	// load's context (LoadAll's, or the poll's), so that a long build
	// stops when the server is told to stop.
	ContextLoader repository.ContextLoader
	// RecordDir is the folder under which the models whose config asks
	// for it (parameter record_requests) record requests ("": none).
	RecordDir string
	// CacheBytes bounds the response cache (the models whose config has
	// response_cache { enable: true }); 0: no cache.
	CacheBytes int64
	// CudaShm keeps the CUDA shared memory regions (package
	// serve/cudashm); nil: registering one fails with ErrNoCudaShm.
	// Shutdown closes it.
	CudaShm CudaShm
	// Name is the server's name in its metadata ("": kiln).
	Name string
}

// Name is the server's name, as its metadata gives it.
func (s *Server) Name() string {
	if s.opts.Name == "" {
		return "kiln"
	}
	return s.opts.Name
}

// modelRunner runs a kiln model, with one execution context (arena) per
// scheduler instance.
type modelRunner struct{ *kiln.Model }

func (m modelRunner) NewInstance() scheduler.Runner { return m.Model.NewContext() }

// InferRequest is one inference request.
type InferRequest struct {
	Model string
	// Version is a version number; empty means the newest loaded version.
	Version string
	ID      string
	Inputs  map[string]*tensor.Tensor
	// Outputs names the outputs wanted; empty means all.
	Outputs []string
	// Priority is a priority level (0: the model's default).
	Priority int
	// Timeout is a queue timeout override (0: the model's default).
	Timeout time.Duration
	// Sequence places the request in a sequence of a stateful model
	// (sequence_batching); models without it ignore it.
	Sequence Sequence
	// Classes asks, per output, for its top classes instead of its tensor
	// (the classification extension): a BYTES tensor of
	// "value:index[:label]" strings, labels from the output's
	// label_filename.
	Classes map[string]int
	// OutputShm places outputs in shared memory regions: each is
	// written there, and its NamedTensor's Shm says where.
	OutputShm map[string]ShmRef
}

// InferResponse is the result of an inference request.
type InferResponse struct {
	Model, Version, ID string
	// Outputs in the order of the model's config.
	Outputs []NamedTensor
}

// NamedTensor is a tensor with its input or output name.
type NamedTensor struct {
	Name   string
	Tensor *tensor.Tensor
	// Shm, for an output written into shared memory, is where, with the
	// bytes written as its ByteSize.
	Shm *ShmRef
}

// Stats are a model version's counters, as in Triton's statistics extension.
type Stats struct {
	Model, Version                        string
	LastInference                         time.Time
	InferenceCount, ExecutionCount        uint64
	SuccessCount, FailCount               uint64
	SuccessNs, FailNs, QueueNs, ComputeNs uint64
	// ComputeInputNs and ComputeOutputNs sum the input preparation and
	// output split times of successful requests; ComputeNs is the model
	// runs' (compute_infer).
	ComputeInputNs, ComputeOutputNs uint64
	// CacheHit and CacheMiss count the successful requests answered from
	// the response cache (and the time to look them up; SuccessCount
	// includes them, the queue and compute counters do not) and those
	// computed and then stored (lookup and insertion time).
	CacheHitCount, CacheHitNs, CacheMissCount, CacheMissNs uint64
	// Batches are the model runs by batch size (Triton's batch_stats),
	// smallest first.
	Batches []BatchStats
	// Memory is the memory the version holds (Triton's memory_usage).
	Memory []MemoryUsage
	// SLOTarget is the model's latency objective (parameter slo_p99_ms; 0
	// for none), SLOMet and SLOMissed the requests that met it and those
	// that did not (refused for a full queue or a queue timeout included).
	SLOTarget         time.Duration
	SLOMet, SLOMissed uint64
	// Instances are the version's instances: where each runs (which GPU)
	// and its model runs; nil for an ensemble or a native model.
	Instances []InstanceStats
}

// BatchStats are the model runs of one batch size: how many, and the time
// spent preparing inputs, running and splitting outputs (each the whole
// batch's).
type BatchStats struct {
	BatchSize                                       int
	Count                                           uint64
	ComputeInputNs, ComputeInferNs, ComputeOutputNs uint64
}

type version struct {
	num   int64
	sched *scheduler.Scheduler
	// runner is what the scheduler runs (WrapRunner's when set).
	runner scheduler.Runner
	// rules check each request's inputs before it is queued.
	rules inputRules
	// precheck, when set, checks them too (a kiln_image model's images).
	precheck func(map[string]*tensor.Tensor) error
	// rec records the version's requests (nil: not asked for).
	rec *record.Recorder
	// int8 rebuilds the version at INT8 from rec's requests (nil: not
	// asked for).
	int8 *int8Rebuild
	// seq is the sequence batcher of a model with sequence_batching.
	seq   *seqBatcher
	stats Stats
	// batches are the runs by batch size (Stats.Batches), guarded by mu.
	batches map[int]*BatchStats
	// instances are the instances' placement and runs (Stats.Instances),
	// guarded by mu.
	instances []InstanceStats
	mu        sync.Mutex
	// cacheGen tells this load of the version from others in cache keys.
	cacheGen uint64
}

type model struct {
	name     string
	state    string // LOADING, READY, UNAVAILABLE
	reason   string
	repo     *repository.Model
	versions []*version // newest first
	// reloadErr is why the latest reload of a READY model failed (the
	// loaded one keeps serving); guarded by Server.mu.
	reloadErr string
	// composing are an ensemble's step models: the ensemble is ready only
	// while they all are.
	composing []string
}

// Server serves a set of models. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	log     *slog.Logger
	mu      sync.RWMutex
	models  map[string]*model
	closing atomic.Bool
	// loadingAll counts the LoadAll calls running (the server is not ready
	// meanwhile).
	loadingAll atomic.Int32
	// rebuilds are the reports of the background INT8 rebuilds.
	rebuilds rebuilds
	// shm are the registered system shared memory regions; shmMu
	// serializes registrations of both kinds (one namespace of names).
	shm   *shm.Registry
	shmMu sync.Mutex
	// cache is the response cache (nil: none).
	cache *cache.LRU[cachedResponse]
	// trace are the trace settings; logs the log settings, those of the
	// logger's handler when it is a *logging.Handler.
	trace traceSettings
	logs  *logging.Handler
}

// New returns a server with no models loaded.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, models: map[string]*model{}, shm: shm.NewRegistry()}
	if h, ok := log.Handler().(*logging.Handler); ok {
		s.logs = h
	} else {
		s.logs = logging.New(io.Discard) // settings kept, the logger unchanged
	}
	if opts.CacheBytes > 0 {
		s.cache = cache.New[cachedResponse](opts.CacheBytes)
	}
	return s
}

// waitingReason is the reason of a model announced, or waiting its turn
// in LoadAll.
const waitingReason = "waiting to load"

// Announce shows the named models (nil: every model of the repository) as
// LOADING, "waiting to load", until a load of each starts, so that a
// server that listens before it loads (kiln serve) never shows a model it
// is about to load as UNAVAILABLE. Models already served are left as they
// are.
func (s *Server) Announce(names []string) error {
	if s.opts.Repository == "" {
		return nil
	}
	all, err := repository.Names(s.opts.Repository)
	if err != nil {
		return err
	}
	if names == nil {
		names = all
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if _, ok := s.models[n]; !ok && slices.Contains(all, n) { // a name not in the repository fails its load at once
			s.models[n] = &model{name: n, state: "LOADING", reason: waitingReason}
		}
	}
	return nil
}

// LoadAll loads every model of the repository, one after the other. Models
// that fail to load are reported by RepositoryIndex with their error; the
// first error is returned. While LoadAll runs the server is live but not
// ready: the models not yet loaded show as LOADING. When ctx ends LoadAll
// stops between models (and inside a model's warmup), the models it had not
// started are left out, and it returns an error wrapping ctx's.
func (s *Server) LoadAll(ctx context.Context) error {
	if s.opts.Repository == "" {
		return nil
	}
	names, err := repository.Names(s.opts.Repository)
	if err != nil {
		return err
	}
	s.loadingAll.Add(1)
	defer s.loadingAll.Add(-1)
	// every model not yet served counts as loading until its turn
	waiting := map[string]*model{}
	s.mu.Lock()
	for _, n := range names {
		if m, ok := s.models[n]; !ok {
			m := &model{name: n, state: "LOADING", reason: waitingReason}
			s.models[n], waiting[n] = m, m
		} else if m.state == "LOADING" && m.reason == waitingReason {
			waiting[n] = m // announced (Announce)
		}
	}
	s.mu.Unlock()
	var first error
	for i, n := range names {
		if err := ctx.Err(); err != nil {
			s.mu.Lock()
			for _, rest := range names[i:] {
				if w, ok := waiting[rest]; ok && s.models[rest] == w {
					delete(s.models, rest)
				}
			}
			s.mu.Unlock()
			return fmt.Errorf("serve: loading the repository canceled before model %q: %w", n, err)
		}
		s.mu.RLock()
		cur := s.models[n]
		s.mu.RUnlock()
		if w, ok := waiting[n]; ok && cur != w && cur != nil && cur.state == "READY" {
			continue // loaded meanwhile, as a step of an ensemble
		}
		if err := s.load(ctx, n, LoadRequest{}); err != nil && first == nil {
			first = err
		}
	}
	if err := ctx.Err(); err != nil && first == nil {
		first = fmt.Errorf("serve: loading the repository canceled: %w", err)
	}
	return first
}

// StartLoadAll runs LoadAll in the background and returns a channel that
// receives its result. The server counts as loading (live, not ready) from
// the moment StartLoadAll returns, so a caller may open its ports right
// after without a moment of false readiness.
func (s *Server) StartLoadAll(ctx context.Context) <-chan error {
	s.loadingAll.Add(1)
	done := make(chan error, 1)
	go func() {
		defer s.loadingAll.Add(-1)
		done <- s.LoadAll(ctx)
	}()
	return done
}

// Load loads (or reloads) a model from the repository.
func (s *Server) Load(name string) error {
	return loadFailed(name, s.load(context.Background(), name, LoadRequest{}))
}

// LoadContext is Load, given up (between versions and during warmup) when
// ctx ends.
func (s *Server) LoadContext(ctx context.Context, name string) error {
	return loadFailed(name, s.load(ctx, name, LoadRequest{}))
}

// LoadWith is LoadContext with a load request's overrides (Triton's
// load_model with a config or files). A bad override is an error wrapping
// repository.ErrConfig or ErrInvalid, returned before the model served now
// is touched.
func (s *Server) LoadWith(ctx context.Context, name string, lr LoadRequest) error {
	return loadFailed(name, s.load(ctx, name, lr))
}

// loadError is a failed load's error, worded as Triton words it ("failed
// to load 'NAME': ..."; Triton's clients look for "failed to load").
type loadError struct {
	name string
	err  error
}

func (e *loadError) Error() string { return "failed to load '" + e.name + "': " + e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

// loadFailed wraps a load's error, if any, in a loadError.
func loadFailed(name string, err error) error {
	if err == nil {
		return nil
	}
	return &loadError{name, err}
}

// load is Load, given up (between versions and during warmup) when ctx ends.
func (s *Server) load(ctx context.Context, name string, lr LoadRequest) error {
	if s.opts.Repository == "" {
		return fmt.Errorf("%w: no model repository", ErrUnsupported)
	}
	start := time.Now()
	ov, err := lr.prepare(name)
	if err != nil {
		return err
	}
	if len(lr.Files) == 0 {
		if names, err := repository.Names(s.opts.Repository); err != nil || !slices.Contains(names, name) {
			return fmt.Errorf("%w: model %q is not in the repository", ErrNotFound, name)
		}
	}
	s.mu.Lock()
	if cur, ok := s.models[name]; !ok || cur.state != "READY" {
		// not ready (nor is the server) until loaded and warmed up
		s.models[name] = &model{name: name, state: "LOADING", reason: "loading"}
	}
	s.mu.Unlock()
	loader := s.opts.Loader
	if cl := s.opts.ContextLoader; cl != nil {
		loader = func(path string, cfg *repository.Config) (*kiln.Model, error) { return cl(ctx, path, cfg) }
	}
	rm, err := repository.LoadOverride(ctx, s.opts.Repository, name, loader, ov)
	if err == nil {
		if ov.Dir != "" {
			rm.TempDir = filepath.Dir(ov.Dir) // removed when the model is
		}
		err = s.add(ctx, rm)
	} else if ov.Dir != "" {
		os.RemoveAll(filepath.Dir(ov.Dir))
	}
	if err != nil {
		s.log.Error("model failed to load", "model", name, "err", err)
		s.failed(name, err)
		return err
	}
	took := time.Since(start)
	if lo, ok := s.opts.Observer.(LoadObserver); ok {
		lo.ModelLoaded(name, took)
	}
	s.log.Info("model loaded", "model", name, "versions", len(rm.Versions), "took", took)
	return nil
}

// failed records that loading name failed: a READY model keeps serving and
// the index shows the error beside it; otherwise the model is UNAVAILABLE.
func (s *Server) failed(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.models[name]; ok && cur.state == "READY" {
		cur.reloadErr = "reload failed: " + err.Error()
		return
	}
	s.models[name] = &model{name: name, state: "UNAVAILABLE", reason: err.Error()}
}

// Add serves an already loaded model, replacing one of the same name once
// every version has run the config's warmup samples (model_warmup) on each
// of its instances. When the warmup fails, rm is closed, the model it
// would replace keeps serving, and the error (wrapping ErrWarmup) is
// returned; Load also shows it in the repository index.
func (s *Server) Add(rm *repository.Model) error { return s.add(context.Background(), rm) }

// add is Add with the warmup given up when ctx ends.
func (s *Server) add(ctx context.Context, rm *repository.Model) error {
	for _, w := range rm.Config.Warnings {
		s.log.Warn("config.pbtxt", "model", rm.Name, "warning", w)
	}
	m := &model{name: rm.Name, state: "READY", repo: rm}
	var ens *ensemble
	if rm.Config.Platform == repository.PlatformEnsemble {
		var err error
		if ens, err = s.newEnsemble(ctx, rm); err != nil {
			drain(context.Background(), m) // closes rm
			return fmt.Errorf("model %s: %w", rm.Name, err)
		}
		m.composing = ens.models()
	}
	for _, v := range rm.Versions {
		vs := &version{num: v.Number, stats: Stats{Model: rm.Name, Version: strconv.FormatInt(v.Number, 10)}, cacheGen: cacheGen.Add(1)}
		opts := schedulerOptions(rm.Config)
		var r scheduler.Runner
		switch {
		case v.Model != nil:
			var err error
			if vs.rules, err = newInputRules(v.Model, rm.Config); err != nil {
				drain(context.Background(), m) // closes rm
				return fmt.Errorf("model %s version %d: %w", rm.Name, v.Number, err)
			}
			r = modelRunner{v.Model}
			if len(v.Instances) > 0 {
				r = placedRunner{modelRunner{v.Model}, v.Instances}
				s.log.Info("model placed", "model", rm.Name, "version", v.Number, "instances", placementSummary(v.Instances))
			}
			vs.instances = instanceStats(rm, v)
			if rm.Config.Raw.GetSequenceBatching() != nil {
				if vs.seq, opts, err = newSeqBatcher(rm); err != nil {
					drain(context.Background(), m)
					return err
				}
			}
		case ens != nil:
			// each step batches in its own model's queue
			r = ensembleRunner{s, ens}
			opts.Instances, opts.Batching = EnsembleConcurrency, false
		case rm.Config.Platform == repository.PlatformImage:
			p, err := newImagePrep(rm.Config)
			if err != nil {
				drain(context.Background(), m)
				return err
			}
			r, vs.precheck = p, p.check
		case rm.Config.Platform == repository.PlatformTokenizer:
			p, err := newTextModel(rm, v.Number)
			if err != nil {
				drain(context.Background(), m)
				return err
			}
			r, vs.precheck = p, p.check
		default:
			drain(context.Background(), m)
			return fmt.Errorf("%w: model %s: platform %q has no model file to run", repository.ErrConfig, rm.Name, rm.Config.Platform)
		}
		var err error
		if opts.SLO, err = sloTarget(rm.Config); err != nil {
			drain(context.Background(), m)
			return fmt.Errorf("model %s: %w", rm.Name, err)
		}
		// the requests the edges are working on (gRPC and HTTP count them
		// for device/cpu): the SLO batcher waits for those still in the
		// request path when the engine would otherwise take their CPU
		opts.InFlight = cpu.RequestsInFlight
		if v.Model != nil {
			if vs.rec, err = s.newRecorder(rm, v.Number, v.Model); err != nil {
				drain(context.Background(), m)
				return err
			}
			if vs.int8, err = s.newINT8Rebuild(rm, vs, v.Model); err != nil {
				if vs.rec != nil {
					vs.rec.Close()
				}
				drain(context.Background(), m)
				return err
			}
		}
		if s.opts.WrapRunner != nil {
			r = s.opts.WrapRunner(rm.Name, r)
		}
		vs.runner = r
		vs.sched = scheduler.New(r, opts, execObserver{s.opts.Observer, rm.Name, vs.stats.Version, vs})
		m.versions = append(m.versions, vs)
	}
	if err := s.warmup(ctx, m); err != nil {
		drain(context.Background(), m)
		return err
	}
	return s.swap(rm.Name, m)
}

// warmup runs the config's warmup samples on every version of m.
func (s *Server) warmup(ctx context.Context, m *model) error {
	cfg := m.repo.Config
	if len(cfg.Warmup) == 0 {
		return nil
	}
	start := time.Now()
	var samples []scheduler.Sample
	for _, w := range cfg.Warmup {
		in, err := repository.WarmupInputs(m.repo.Dir, w, cfg.MaxBatchSize)
		if err == nil {
			err = checkInputs(cfg, &InferRequest{Inputs: in})
		}
		if err != nil {
			return fmt.Errorf("%w: model %s: %w", ErrWarmup, m.name, err)
		}
		samples = append(samples, scheduler.Sample{Name: w.Name, Inputs: in, Count: w.Count})
	}
	for _, v := range m.versions {
		samples := samples
		if v.seq != nil {
			// a stateful model's samples run as one-request sequences
			samples = slices.Clone(samples)
			for i := range samples {
				in, err := v.seq.warmInputs(samples[i].Inputs)
				if err != nil {
					return fmt.Errorf("%w: model %s: %w", ErrWarmup, m.name, err)
				}
				samples[i].Inputs = in
			}
		}
		if err := v.sched.Warmup(ctx, samples); err != nil {
			return fmt.Errorf("%w: model %s version %d: %w", ErrWarmup, m.name, v.num, err)
		}
	}
	s.log.Info("model warmed up", "model", m.name, "samples", len(samples), "versions", len(m.versions), "took", time.Since(start))
	return nil
}

// swap installs m and drains the model it replaces in the background.
// It returns ErrNotReady, and drains m, when the server is shutting down.
func (s *Server) swap(name string, m *model) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		go drain(context.Background(), m)
		return fmt.Errorf("%w: model %q: the server is shutting down", ErrNotReady, name)
	}
	old := s.models[name]
	s.models[name] = m
	s.mu.Unlock()
	if old != nil {
		go drain(context.Background(), old)
	}
	return nil
}

// drain stops serving m: every version's scheduler refuses new requests and
// finishes the queued ones (until ctx ends: then the queued ones fail). The
// model's files (its weights, possibly memory-mapped) are closed only once
// every instance of every version has stopped running: right away when they
// have, else in the background when the last run ends, so that a caller
// giving up never unmaps weights a batch still reads.
func drain(ctx context.Context, m *model) error {
	var errs []error
	for _, v := range m.versions {
		errs = append(errs, v.sched.Shutdown(ctx))
	}
	if m.stopped() {
		return errors.Join(append(errs, m.close())...)
	}
	go func() {
		for _, v := range m.versions {
			<-v.sched.Stopped()
		}
		m.close()
	}()
	return errors.Join(errs...)
}

// stopped reports whether no instance of m runs any more.
func (m *model) stopped() bool {
	for _, v := range m.versions {
		select {
		case <-v.sched.Stopped():
		default:
			return false
		}
	}
	return true
}

// close releases what m's versions hold: their runners (when a WrapRunner
// made closable ones) and the model files. Call it only once every instance
// has stopped.
func (m *model) close() error {
	var errs []error
	for _, v := range m.versions {
		if v.seq != nil {
			v.seq.close()
		}
		if v.rec != nil {
			v.rec.Close()
		}
		if c, ok := v.runner.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	if m.repo != nil {
		errs = append(errs, m.repo.Close())
	}
	return errors.Join(errs...)
}

// Unload stops serving a model; requests already queued finish first.
func (s *Server) Unload(ctx context.Context, name string) error {
	s.mu.Lock()
	m, ok := s.models[name]
	if ok {
		delete(s.models, name)
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: model %q", ErrNotFound, name)
	}
	return drain(ctx, m)
}

// Shutdown marks the server not ready at once, refuses new requests, and
// waits (until ctx ends) for queued and running requests to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	ms := s.models
	s.models = map[string]*model{}
	s.mu.Unlock()
	var errs []error
	for _, m := range ms {
		errs = append(errs, drain(ctx, m))
	}
	errs = append(errs, s.shm.Close())
	if s.opts.CudaShm != nil {
		errs = append(errs, s.opts.CudaShm.Close())
	}
	return errors.Join(errs...)
}

func schedulerOptions(c *repository.Config) scheduler.Options {
	o := scheduler.Options{Instances: c.Instances(), MaxBatchSize: c.MaxBatchSize}
	db := c.DynamicBatching
	if db == nil {
		// a latency objective turns dynamic batching on
		_, slo := c.Parameters[ParamSLO]
		o.Batching = slo && c.MaxBatchSize > 0
		return o
	}
	o.Batching = c.MaxBatchSize > 0
	o.PreferredBatchSizes = db.PreferredBatchSize
	o.MaxQueueDelay = time.Duration(db.MaxQueueDelayMicroseconds) * time.Microsecond
	o.PriorityLevels = int(db.PriorityLevels)
	o.DefaultPriority = int(db.DefaultPriorityLevel)
	conv := func(p repository.QueuePolicy) scheduler.QueuePolicy {
		q := scheduler.QueuePolicy{DefaultTimeout: time.Duration(p.DefaultTimeoutMicroseconds) * time.Microsecond,
			AllowOverride: p.AllowTimeoutOverride, MaxQueueSize: int(p.MaxQueueSize)}
		if p.TimeoutAction == repository.Delay {
			q.Action = scheduler.Delay
		}
		return q
	}
	o.DefaultPolicy = conv(db.DefaultQueuePolicy)
	if len(db.PriorityQueuePolicy) > 0 {
		o.Policies = map[int]scheduler.QueuePolicy{}
		for k, p := range db.PriorityQueuePolicy {
			o.Policies[int(k)] = conv(p)
		}
	}
	return o
}

type execObserver struct {
	obs            Observer
	model, version string
	v              *version
}

func (e execObserver) Executed(x scheduler.Execution) {
	e.v.mu.Lock()
	e.v.stats.ExecutionCount++
	b := e.v.batches[x.BatchSize]
	if b == nil {
		if e.v.batches == nil {
			e.v.batches = map[int]*BatchStats{}
		}
		b = &BatchStats{BatchSize: x.BatchSize}
		e.v.batches[x.BatchSize] = b
	}
	b.Count++
	b.ComputeInputNs += uint64(x.Input)
	b.ComputeInferNs += uint64(x.Compute)
	b.ComputeOutputNs += uint64(x.Output)
	if x.Instance >= 0 && x.Instance < len(e.v.instances) {
		e.v.instances[x.Instance].ExecutionCount++
	}
	e.v.mu.Unlock()
	if e.obs != nil {
		e.obs.Executed(e.model, e.version, x.Requests, x.BatchSize, x.Compute)
		if so, ok := e.obs.(SwitchObserver); ok && x.Switched {
			so.ContextSwitched(e.model, e.version)
		}
	}
}

// Live reports whether the server process is up.
func (s *Server) Live() bool { return true }

// Ready reports whether the server accepts requests: not shutting down, no
// LoadAll running, and every model in the repository loaded and warmed up
// (none LOADING or UNAVAILABLE).
func (s *Server) Ready() bool {
	if s.closing.Load() || s.loadingAll.Load() > 0 {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.models {
		if m.state != "READY" {
			return false
		}
	}
	return true
}

// lookup returns a ready model and the version asked for.
func (s *Server) lookup(name, ver string) (*model, *version, error) {
	if s.closing.Load() {
		return nil, nil, fmt.Errorf("%w: server is shutting down", ErrNotReady)
	}
	s.mu.RLock()
	m, ok := s.models[name]
	s.mu.RUnlock()
	if !ok {
		return nil, nil, &unknownModel{name: name}
	}
	if m.state != "READY" {
		return m, nil, fmt.Errorf("%w: model %q: %s", ErrNotReady, name, m.reason)
	}
	if len(m.composing) > 0 {
		s.mu.RLock()
		for _, c := range m.composing {
			if cm := s.models[c]; cm == nil || cm.state != "READY" {
				s.mu.RUnlock()
				return m, nil, fmt.Errorf("%w: ensemble %q: its step model %q is not loaded", ErrNotReady, name, c)
			}
		}
		s.mu.RUnlock()
	}
	if ver == "" {
		return m, m.versions[0], nil
	}
	n, err := strconv.ParseInt(ver, 10, 64)
	if err != nil || !canonicalVersion(ver) {
		return nil, nil, fmt.Errorf("%w: model %q version %q: a version is a decimal number without sign or leading zeros", ErrInvalid, name, ver)
	}
	for _, v := range m.versions {
		if v.num == n {
			return m, v, nil
		}
	}
	return nil, nil, &unknownModel{name: name, version: ver}
}

// unknownModel is ErrNotFound for a model or version the server does not
// have, worded as Triton words it (its clients look for "Request for
// unknown model").
type unknownModel struct{ name, version string }

func (e *unknownModel) Error() string {
	if e.version == "" {
		return "Request for unknown model: '" + e.name + "' is not found"
	}
	return "Request for unknown model: '" + e.name + "' version " + e.version + " is not found"
}

func (e *unknownModel) Is(target error) bool { return target == ErrNotFound }

// ModelReady reports whether a model (and version) is ready.
func (s *Server) ModelReady(name, ver string) (bool, error) {
	_, _, err := s.lookup(name, ver)
	if errors.Is(err, ErrNotReady) {
		return false, nil
	}
	return err == nil, err
}

// ModelConfig returns the config of a ready model and the version numbers
// it serves.
func (s *Server) ModelConfig(name, ver string) (*repository.Config, []string, error) {
	m, _, err := s.lookup(name, ver)
	if err != nil {
		return nil, nil, err
	}
	var vs []string
	for _, v := range m.versions {
		vs = append(vs, strconv.FormatInt(v.num, 10))
	}
	return m.repo.Config, vs, nil
}

// ModelStats returns the statistics of every version of name, or of every
// model when name is empty.
func (s *Server) ModelStats(name, ver string) ([]Stats, error) {
	var ms []*model
	if name != "" {
		m, _, err := s.lookup(name, ver)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	} else {
		s.mu.RLock()
		for _, m := range s.models {
			ms = append(ms, m)
		}
		s.mu.RUnlock()
	}
	var out []Stats
	for _, m := range ms {
		for _, v := range m.versions {
			if ver != "" && strconv.FormatInt(v.num, 10) != ver {
				continue
			}
			v.mu.Lock()
			st := v.stats
			for _, b := range v.batches {
				st.Batches = append(st.Batches, *b)
			}
			st.Instances = slices.Clone(v.instances)
			v.mu.Unlock()
			slo := v.sched.SLOStats()
			st.SLOTarget, st.SLOMet, st.SLOMissed = slo.Target, slo.Met, slo.Missed
			slices.SortFunc(st.Batches, func(a, b BatchStats) int { return a.BatchSize - b.BatchSize })
			st.Memory = m.memoryUsage(v.num)
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b Stats) int {
		if a.Model != b.Model {
			return map[bool]int{true: -1, false: 1}[a.Model < b.Model]
		}
		return map[bool]int{true: -1, false: 1}[a.Version < b.Version]
	})
	return out, nil
}

// IndexEntry is one model of the repository index.
type IndexEntry struct {
	Name, Version, State, Reason string
}

// RepositoryIndex lists the models of the repository (loaded or not) and
// the models served.
func (s *Server) RepositoryIndex() []IndexEntry {
	s.mu.RLock()
	seen := map[string]bool{}
	var out []IndexEntry
	for name, m := range s.models {
		seen[name] = true
		if len(m.versions) == 0 {
			out = append(out, IndexEntry{Name: name, State: m.state, Reason: m.reason})
		}
		reason := m.reloadErr
		for _, c := range m.composing {
			if cm := s.models[c]; cm == nil || cm.state != "READY" {
				reason = fmt.Sprintf("not ready: its step model %q is not loaded", c)
				break
			}
		}
		for _, v := range m.versions {
			out = append(out, IndexEntry{Name: name, Version: strconv.FormatInt(v.num, 10), State: m.state, Reason: reason})
		}
	}
	s.mu.RUnlock()
	if s.opts.Repository != "" {
		names, _ := repository.Names(s.opts.Repository)
		for _, n := range names {
			if !seen[n] {
				out = append(out, IndexEntry{Name: n, State: "UNAVAILABLE", Reason: "unloaded"})
			}
		}
	}
	slices.SortFunc(out, func(a, b IndexEntry) int {
		if a.Name != b.Name {
			return map[bool]int{true: -1, false: 1}[a.Name < b.Name]
		}
		return map[bool]int{true: -1, false: 1}[a.Version < b.Version]
	})
	return out
}

// Pending returns the requests waiting in each model version's queue, keyed
// by model and version.
func (s *Server) Pending() map[[2]string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[[2]string]int{}
	for name, m := range s.models {
		for _, v := range m.versions {
			out[[2]string{name, strconv.FormatInt(v.num, 10)}] = v.sched.Pending()
		}
	}
	return out
}

// Infer runs one inference request.
func (s *Server) Infer(ctx context.Context, req *InferRequest) (*InferResponse, error) {
	start := time.Now()
	if err := s.checkShmOutputs(req); err != nil {
		return nil, err
	}
	var (
		m   *model
		v   *version
		cfg *repository.Config
		res *scheduler.Result
		err error
		cp  cacheProbe
	)
	for attempt := 0; ; attempt++ {
		if m, v, err = s.lookup(req.Model, req.Version); err != nil {
			return nil, err
		}
		cfg = m.repo.Config
		if attempt == 0 {
			var hit *InferResponse
			if hit, cp, err = s.cacheLookup(m, v, req, start); hit != nil || err != nil {
				return hit, err
			}
		} else {
			cp = cacheProbe{} // the version was replaced: its key is stale
		}
		res, err = s.infer(ctx, cfg, v, req)
		// A reload replaced the model between lookup and queueing: the new
		// one takes the request, so that a reload fails no request.
		if !errors.Is(err, scheduler.ErrClosed) || s.closing.Load() || attempt == 3 {
			break
		}
	}
	total := time.Since(start)
	ver := strconv.FormatInt(v.num, 10)
	batch := 1
	if cfg.MaxBatchSize > 0 {
		for _, t := range req.Inputs {
			if len(t.Shape) > 0 {
				batch = t.Shape[0]
			}
			break
		}
	}
	v.mu.Lock()
	if err == nil {
		v.stats.SuccessCount++
		v.stats.InferenceCount += uint64(batch)
		v.stats.SuccessNs += uint64(total)
		v.stats.QueueNs += uint64(res.Queue)
		v.stats.ComputeNs += uint64(res.Compute)
		v.stats.ComputeInputNs += uint64(res.Input)
		v.stats.ComputeOutputNs += uint64(res.Output)
		v.stats.LastInference = start.Add(total) // (total's end: one clock read less)
	} else {
		v.stats.FailCount++
		v.stats.FailNs += uint64(total)
	}
	v.mu.Unlock()
	if s.opts.Observer != nil {
		s.observeSLO(m.name, ver, v, res != nil && res.SLOMet, err)
		if err == nil {
			s.opts.Observer.RequestDone(m.name, ver, batch, "", Times{Total: total, Queue: res.Queue,
				ComputeInput: res.Input, ComputeInfer: res.Compute, ComputeOutput: res.Output})
		} else {
			s.opts.Observer.RequestDone(m.name, ver, batch, FailureReason(err), Times{Total: total})
		}
	}
	if s.trace.on.Load() {
		s.traceRequest(m.name, ver, start, total, res, err)
	}
	if err != nil {
		return nil, err
	}
	// the response and room for one output in one allocation
	r1 := &struct {
		r   InferResponse
		one [1]NamedTensor
	}{r: InferResponse{Model: m.name, Version: ver, ID: req.ID}}
	resp := &r1.r
	resp.Outputs = r1.one[:0]
	for _, o := range cfg.Outputs {
		if len(req.Outputs) > 0 && !slices.Contains(req.Outputs, o.Name) {
			continue
		}
		if t, ok := res.Outputs[o.Name]; ok {
			if k := req.Classes[o.Name]; k > 0 {
				if t, err = classify(t, k, cfg.MaxBatchSize > 0, m.repo.Labels[o.Name]); err != nil {
					return nil, err
				}
			}
			resp.Outputs = append(resp.Outputs, NamedTensor{Name: o.Name, Tensor: t})
		}
	}
	s.cacheStore(v, cp, resp)
	if len(req.OutputShm) > 0 {
		if err := s.writeShmOutputs(resp, req); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// FailureReason names the kind of a failed request, as Triton's
// nv_inference_request_failure reason label: REJECTED, CANCELED, BACKEND or OTHER.
func FailureReason(err error) string {
	switch {
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrTimeout), errors.Is(err, scheduler.ErrClosed):
		return "REJECTED"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "CANCELED"
	case errors.Is(err, ErrInvalid):
		return "OTHER"
	}
	return "BACKEND"
}

func (s *Server) infer(ctx context.Context, cfg *repository.Config, v *version, req *InferRequest) (*scheduler.Result, error) {
	if v.seq != nil {
		return s.inferSequence(ctx, cfg, v, req)
	}
	if err := checkInputs(cfg, req); err != nil {
		return nil, err
	}
	return s.run(ctx, v, req, req.Inputs)
}

// run checks inputs (req's, with those the server adds) against the
// model's rules and runs them on v's scheduler.
func (s *Server) run(ctx context.Context, v *version, req *InferRequest, inputs map[string]*tensor.Tensor) (*scheduler.Result, error) {
	if err := v.rules.check(inputs); err != nil {
		return nil, err
	}
	if v.precheck != nil {
		if err := v.precheck(inputs); err != nil {
			return nil, err
		}
	}
	if v.rec != nil {
		v.rec.Offer(inputs)
		s.maybeRebuild(v)
	}
	res, err := v.sched.Infer(ctx, &scheduler.Request{Inputs: inputs, Priority: req.Priority, Timeout: req.Timeout})
	if errors.Is(err, scheduler.ErrInput) {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if errors.Is(err, scheduler.ErrClosed) {
		return nil, fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	if err != nil {
		return nil, wrapRunError(err, inputs)
	}
	return res, nil
}

// checkData checks that a tensor's data fills its shape exactly (a batch
// joins requests by their data: one request's short data would shift the
// others').
func checkData(name string, t *tensor.Tensor) error {
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("%w: input %q has a negative dimension in shape %v", ErrInvalid, name, t.Shape)
		}
		if d > 0 && n > math.MaxInt/d {
			return fmt.Errorf("%w: input %q shape %v is too large", ErrInvalid, name, t.Shape)
		}
		n *= d
	}
	if t.DType == tensor.String {
		if len(t.Strings) != n {
			return fmt.Errorf("%w: input %q has %d strings for shape %v", ErrInvalid, name, len(t.Strings), t.Shape)
		}
		return nil
	}
	if sz := t.DType.Size(); sz <= 0 || n > math.MaxInt/sz || len(t.Data) != n*sz {
		return fmt.Errorf("%w: input %q has %d bytes of data for shape %v of %v", ErrInvalid, name, len(t.Data), t.Shape, t.DType)
	}
	return nil
}

// checkInputs checks req's inputs against the model config.
func checkInputs(cfg *repository.Config, req *InferRequest) error {
	known := map[string]repository.IO{}
	for _, in := range cfg.Inputs {
		known[in.Name] = in
	}
	for name, t := range req.Inputs {
		in, ok := known[name]
		if !ok {
			return fmt.Errorf("%w: model %s has no input %q", ErrInvalid, cfg.Name, name)
		}
		if t == nil {
			return fmt.Errorf("%w: input %q is empty", ErrInvalid, name)
		}
		if t.DType != in.DataType {
			return fmt.Errorf("%w: input %q is %v, the model wants %v", ErrInvalid, name, t.DType, in.DataType)
		}
		if err := checkData(name, t); err != nil {
			return err
		}
		dims := t.Shape
		if cfg.MaxBatchSize > 0 {
			if len(dims) == 0 || dims[0] < 1 || dims[0] > cfg.MaxBatchSize {
				return fmt.Errorf("%w: input %q shape %v: batch size must be 1..%d", ErrInvalid, name, t.Shape, cfg.MaxBatchSize)
			}
			dims = dims[1:]
		}
		if len(in.Dims) > 0 || cfg.MaxBatchSize == 0 {
			if len(dims) != len(in.Dims) {
				return fmt.Errorf("%w: input %q shape %v does not match the model's dims %v", ErrInvalid, name, t.Shape, in.Dims)
			}
			for i, d := range in.Dims {
				if d >= 0 && int64(dims[i]) != d {
					return fmt.Errorf("%w: input %q shape %v does not match the model's dims %v", ErrInvalid, name, t.Shape, in.Dims)
				}
			}
		}
	}
	for _, in := range cfg.Inputs {
		if _, ok := req.Inputs[in.Name]; !ok && !in.Optional {
			return fmt.Errorf("%w: missing input %q", ErrInvalid, in.Name)
		}
	}
	for _, o := range req.Outputs {
		if !slices.ContainsFunc(cfg.Outputs, func(io repository.IO) bool { return io.Name == o }) {
			return fmt.Errorf("%w: model %s has no output %q", ErrInvalid, cfg.Name, o)
		}
	}
	for o, k := range req.Classes {
		if !slices.ContainsFunc(cfg.Outputs, func(io repository.IO) bool { return io.Name == o }) {
			return fmt.Errorf("%w: model %s has no output %q to classify", ErrInvalid, cfg.Name, o)
		}
		if k < 0 || k > MaxClassCount {
			return fmt.Errorf("%w: output %q: class count %d outside 0..%d", ErrInvalid, o, k, MaxClassCount)
		}
	}
	return nil
}

// canonicalVersion reports whether ver is spelled as the repository's
// version folders are: decimal digits, no sign, no leading zero.
func canonicalVersion(ver string) bool {
	if ver == "" || len(ver) > 1 && ver[0] == '0' {
		return false
	}
	for _, c := range []byte(ver) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
