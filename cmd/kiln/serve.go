package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/cudashm"
	"github.com/kilnai/kiln/serve/grpcapi"
	"github.com/kilnai/kiln/serve/httpapi"
	"github.com/kilnai/kiln/serve/logging"
	"github.com/kilnai/kiln/serve/metrics"
	"github.com/kilnai/kiln/serve/repository"
)

// serveCmd is "kiln serve": a KServe v2 HTTP server for a model repository
// (or the bundled example model), with Prometheus metrics on another port.
func serveCmd(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return runServe(ctx, args, nil)
}

// runServe serves until ctx ends, then drains. When started is not nil it
// receives the HTTP, metrics and gRPC addresses once they listen, which is
// before the repository's models load (the server is live and not ready
// meanwhile, as Triton is).
func runServe(ctx context.Context, args []string, started chan<- [3]string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	repo := fs.String("model-repository", "", "model repository folder (Triton layout); empty serves the bundled example as \"tinycnn\"")
	host := fs.String("host", "", "address to listen on (empty: all interfaces)")
	httpPort := fs.Int("http-port", 8000, "KServe v2 HTTP port (0: any free port)")
	grpcPort := fs.Int("grpc-port", 8001, "KServe v2 gRPC port (0: any free port, -1: off)")
	metricsPort := fs.Int("metrics-port", 8002, "Prometheus metrics port (0: any free port, -1: off); HTTPS with --tls-cert, behind --metrics-token")
	exitTimeout := fs.Duration("exit-timeout", 30*time.Second, "how long in-flight requests may take to finish after SIGTERM")
	serverName := fs.String("server-name", "kiln", "the server's name in its metadata (GET /v2, gRPC ServerMetadata); Triton's example clients check for \"triton\"")
	grace := fs.Duration("shutdown-grace", 0, "after SIGTERM and the drain of in-flight requests, how long the ports stay open answering \"not ready\" (503 to new inference requests) before they close, so that clients and load balancers see 503 rather than a closed port (within --exit-timeout)")
	control := fs.String("model-control-mode", "none", "none: load the repository once; poll: reload changed models; explicit: load only the --load-model models at start, then the repository API loads and unloads")
	var loadModels []string
	fs.Func("load-model", "with --model-control-mode explicit: the `NAME` of a model of the repository to load at start (repeatable; '*' loads them all); without it explicit mode starts with no model loaded, as Triton does", func(v string) error {
		if v == "" {
			return errors.New("empty model name")
		}
		loadModels = append(loadModels, v)
		return nil
	})
	pollEvery := fs.Duration("repository-poll", 15*time.Second, "how often --model-control-mode poll looks for changes")
	tlsCert := fs.String("tls-cert", "", "PEM certificate file: serve HTTPS, gRPC over TLS and HTTPS metrics (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key file for --tls-cert")
	inferToken := fs.String("infer-token", "", "bearer token required for inference and metadata, over HTTP and gRPC (default: $KILN_INFER_TOKEN)")
	adminToken := fs.String("admin-token", "", "bearer token required for the repository API (index, load, unload) and the trace and log settings, over HTTP and gRPC (default: $KILN_ADMIN_TOKEN, else the infer token, so that --infer-token alone never leaves the repository API open)")
	metricsToken := fs.String("metrics-token", "", "bearer token required on the metrics port, /metrics and /debug/pprof/ (default: $KILN_METRICS_TOKEN, else the inference token)")
	pprofOn := fs.Bool("pprof", false, "serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics port, behind its token")
	readTimeout := fs.Duration("http-read-timeout", 30*time.Second, "how long a client may take to send a whole HTTP request, headers and body (0: no limit); the time to compute the answer is not counted, nor an open WebSocket stream")
	writeTimeout := fs.Duration("http-write-timeout", 30*time.Second, "how long writing an HTTP response may take from its first byte (0: no limit); queueing and computing are not counted")
	idleTimeout := fs.Duration("http-idle-timeout", 2*time.Minute, "how long an idle keep-alive HTTP connection is kept open (0: the read timeout)")
	maxBytes := fs.Int64("max-request-bytes", httpapi.DefaultMaxRequestBytes, "largest request body accepted")
	gpuMetrics := fs.Bool("allow-gpu-metrics", true, "export nv_gpu_* metrics read through NVML (absent without an NVIDIA driver)")
	memLimit := fs.String("memory-limit", "", "largest memory one execution context (instance) of a built model may take, e.g. 2G: a model that needs more at its largest shapes is refused at load, a request that would need more gets 400 (default: half the machine's memory, or of its cgroup or GOMEMLIMIT when smaller)")
	planCache := fs.String("plan-cache", defaultPlanCache(), "folder of built engine plans, keyed by model, config, device and kiln version: a restart loads them instead of building")
	traceDir := fs.String("trace-dir", "", "folder the trace settings' trace_file names a file in (empty: trace files are refused)")
	cacheSize := fs.String("cache-size", "64M", "bound of the response cache, shared by the models whose config.pbtxt has response_cache { enable: true } (0: no cache)")
	recordDir := recordDirFlag(fs)
	noBuild := fs.Bool("no-build", false, "serve ONNX graphs as they are, without building engines (no optimization, no plan cache)")
	gcFloor := fs.Int64("gc-heap-floor", serve.DefaultGCHeapFloor, "bytes the Go heap may grow between garbage collections at least (0: Go's default, a cycle each time the heap doubles; ignored when GOGC is set): a small model's server collects less often, for less CPU a request")
	intraOp := fs.Int("intra-op-threads", 0, "threads each layer of a CPU model is split into, for every model (0: automatic: up to GOMAXPROCS while a core is free, on the request's own thread while every core is busy with other requests; N: always at most N, as ONNX Runtime's intra_op_num_threads)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected arguments %q", pos)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usageError(fs, "--tls-cert and --tls-key go together")
	}
	for _, t := range []struct {
		v   *string
		env string
	}{{inferToken, "KILN_INFER_TOKEN"}, {adminToken, "KILN_ADMIN_TOKEN"}, {metricsToken, "KILN_METRICS_TOKEN"}} {
		if *t.v == "" {
			*t.v = os.Getenv(t.env)
		}
	}
	if *metricsToken == "" {
		*metricsToken = *inferToken
	}
	if *adminToken == "" {
		*adminToken = *inferToken
	}
	switch *control {
	case "none", "poll", "explicit":
	default:
		return usageError(fs, "--model-control-mode %q: want none, poll or explicit", *control)
	}
	if *control == "poll" && (*repo == "" || *pollEvery <= 0) {
		return usageError(fs, "--model-control-mode poll needs --model-repository and a positive --repository-poll")
	}
	if len(loadModels) > 0 && (*control != "explicit" || *repo == "") {
		return usageError(fs, "--load-model needs --model-control-mode explicit and --model-repository")
	}
	if err := cpu.SetThreads(*intraOp); err != nil {
		return usageError(fs, "--intra-op-threads %d: want 0 (automatic) or a positive count", *intraOp)
	}
	if *gcFloor < 0 {
		return usageError(fs, "--gc-heap-floor %d: want 0 (Go's default) or a positive byte count", *gcFloor)
	}
	defer serve.SetGCHeapFloor(*gcFloor)()
	if *pprofOn && *metricsPort < 0 {
		return usageError(fs, "--pprof is served on the metrics port: it needs --metrics-port")
	}
	for _, d := range []*time.Duration{readTimeout, writeTimeout, idleTimeout} {
		if *d < 0 {
			return usageError(fs, "negative HTTP timeout %v", *d)
		}
	}
	if *repo != "" {
		// A mistyped folder is an error now, not a server ready with no model.
		st, err := os.Stat(*repo)
		switch {
		case err != nil:
			return fail("serve: --model-repository: %v", err)
		case !st.IsDir():
			return fail("serve: --model-repository %s is not a folder", *repo)
		}
		names, err := repository.Names(*repo)
		if err != nil {
			return fail("serve: --model-repository: %v", err)
		}
		for _, n := range loadModels {
			if n != "*" && !slices.Contains(names, n) {
				return fail("serve: --load-model %q: no such model folder in %s (it has %q)", n, *repo, names)
			}
		}
	}
	// levels and format change at run time through /v2/logging
	log := slog.New(logging.New(os.Stderr))

	var memoryLimit int64
	if *memLimit != "" {
		if memoryLimit, err = parseSize(*memLimit); err != nil || memoryLimit == 0 {
			return usageError(fs, "--memory-limit %q: want a positive size such as 512M or 2G", *memLimit)
		}
	}
	m := metrics.New(nil)
	if *gpuMetrics && *metricsPort >= 0 {
		m.EnableGPU(log, cuda.Options{}) // without a GPU: logged, and no nv_gpu_* metrics
	}
	cacheBytes, err := parseSize(*cacheSize)
	if err != nil {
		return usageError(fs, "--cache-size %q: want a size such as 64M or 1G, or 0 for no cache", *cacheSize)
	}
	opts := serve.Options{Repository: *repo, Logger: log, Observer: m, RecordDir: *recordDir, CacheBytes: cacheBytes, Name: *serverName,
		CudaShm: cudashm.New(cuda.Options{})} // the driver opened at the first CUDA region
	if !*noBuild {
		opts.Loader = planLoader(ctx, &kiln.PlanCache{Dir: *planCache, MemoryLimit: memoryLimit}, log)
	}
	s := serve.New(opts)
	if *traceDir != "" {
		s.SetTraceDir(*traceDir)
	}
	m.SetPending(s)
	if *repo == "" {
		rm, err := bundledModel(opts.Loader)
		if err == nil {
			err = s.Add(rm)
		}
		if err != nil {
			return fail("serve: %v", err)
		}
	}
	// The ports listen before the models load: live at once, not ready
	// until loading ends (loading covers the gaps between the models'
	// loads, where the server alone would look ready).
	var loading atomic.Bool
	loading.Store(*repo != "")
	ready := func() bool { return !loading.Load() && s.Ready() }
	// the models about to load show as LOADING from the first request on,
	// not UNAVAILABLE until their turn starts
	if *repo != "" {
		var names []string // nil: all of them
		if *control == "explicit" && !slices.Contains(loadModels, "*") {
			names = append([]string{}, loadModels...)
		}
		if err := s.Announce(names); err != nil {
			log.Warn("repository", "err", err)
		}
	}

	var tlsConf *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fail("serve: --tls-cert: %v", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	lp, err := listenPorts(*host, *httpPort, *grpcPort, *metricsPort)
	if err != nil {
		return fail("serve: %v", err)
	}
	hl, gl, ml := lp.http, lp.grpc, lp.metrics
	closeAll := lp.close
	var draining atomic.Bool
	timeouts := httpTimeouts{read: *readTimeout, write: *writeTimeout, idle: *idleTimeout, closing: &draining}
	hsrv := timeouts.server(notReadyWhile(&loading, httpapi.New(s, httpapi.Options{MaxRequestBytes: *maxBytes, DisableModelControl: *control != "explicit",
		InferToken: *inferToken, AdminToken: *adminToken})), log)
	errc := make(chan error, 3)
	serveHTTP := func(srv *http.Server, l net.Listener) {
		if tlsConf != nil {
			srv.TLSConfig = tlsConf.Clone()
			errc <- srv.ServeTLS(l, "", "")
			return
		}
		errc <- srv.Serve(l)
	}
	go serveHTTP(hsrv, hl)
	var gsrv *grpc.Server
	var hs *health.Server
	gaddr := ""
	if gl != nil {
		gopts := grpcapi.Auth{InferToken: *inferToken, AdminToken: *adminToken}.ServerOptions()
		gopts = append(gopts, grpcapi.DecodeErrorOptions()...)
		if tlsConf != nil {
			gopts = append(gopts, grpc.Creds(credentials.NewTLS(tlsConf.Clone())))
		}
		gopts = append(gopts, grpc.MaxRecvMsgSize(int(min(*maxBytes, 1<<31-1))), grpcapi.ServedStats(s))
		gopts = append(gopts, grpcapi.PathOptions()...)
		gsrv = grpc.NewServer(gopts...)
		grpcapi.Register(gsrv, s, *control == "explicit").Ready = ready
		hs = health.NewServer()
		// gRPC health follows readiness (every model loaded and warmed up),
		// checked every second; NOT_SERVING for good once shutting down.
		setHealth := func() {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ready() {
				st = healthpb.HealthCheckResponse_SERVING
			}
			hs.SetServingStatus("", st)
			hs.SetServingStatus("inference.GRPCInferenceService", st)
		}
		setHealth()
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					setHealth()
				}
			}
		}()
		healthpb.RegisterHealthServer(gsrv, hs)
		gaddr = gl.Addr().String()
		go func() { errc <- gsrv.Serve(gl) }()
	}
	var msrv *http.Server
	maddr := ""
	if ml != nil {
		msrv = timeouts.server(m.PortHandler(metrics.PortOptions{Token: *metricsToken, Pprof: *pprofOn}), log)
		maddr = ml.Addr().String()
		go serveHTTP(msrv, ml)
	}
	log.Info("listening", "http", hl.Addr().String(), "grpc", gaddr, "metrics", maddr, "tls", tlsConf != nil)

	// Load the models in the background; SIGTERM (ctx) cancels the loading.
	go func() {
		defer loading.Store(false)
		if *repo == "" {
			return
		}
		var err error
		switch {
		case *control != "explicit" || slices.Contains(loadModels, "*"):
			err = s.LoadAll(ctx)
		default:
			var errs []error
			for _, n := range loadModels {
				if ctx.Err() != nil {
					errs = append(errs, fmt.Errorf("loading canceled before model %q: %w", n, ctx.Err()))
					break
				}
				errs = append(errs, s.LoadContext(ctx, n))
			}
			err = errors.Join(errs...)
		}
		switch {
		case ctx.Err() != nil:
			log.Info("loading canceled", "err", err)
			return
		case err != nil:
			// a broken model is reported in the index; the others serve
			log.Error("not every model loaded", "err", err)
		}
		log.Info("models loaded", "ready", s.Ready())
		if *control == "poll" {
			s.StartPoll(ctx, *pollEvery)
		}
	}()
	if started != nil {
		started <- [3]string{hl.Addr().String(), maddr, gaddr}
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		closeAll()
		s.Shutdown(context.Background())
		if gsrv != nil {
			gsrv.Stop()
		}
		return fail("serve: %v", err)
	}
	// Ready turns false at once; new inference requests get 503; the
	// requests in flight finish within the exit timeout.
	log.Info("shutting down", "exit-timeout", *exitTimeout)
	// Keep-alives end: each connection's next response says "Connection:
	// close" and the connection closes after it (an HTTP/2 one gets a
	// GOAWAY), so clients open new connections, answered 503 while
	// draining, instead of sending on one the server closes. The idle ones
	// close at the end: closing them now (SetKeepAlivesEnabled(false)
	// does) would race with clients sending their next request on them.
	draining.Store(true)
	if hs != nil {
		hs.Shutdown() // gRPC health: NOT_SERVING
	}
	sctx, cancel := context.WithTimeout(context.Background(), *exitTimeout)
	defer cancel()
	// Loading stops at SIGTERM (ctx): between models, in a build, in
	// LoadAll's warmups; a model that still finishes loading after
	// Shutdown is drained by the server, not served.
	//
	// The listener stays open while the queues drain, then for the shutdown
	// grace, so that readiness probes and clients see "not ready" rather
	// than a refused connection (or a reset one, for a connection still in
	// the listen backlog when the listener closes).
	serr := s.Shutdown(sctx)
	if *grace > 0 {
		select {
		case <-time.After(*grace):
		case <-sctx.Done():
		}
	}
	hsrv.SetKeepAlivesEnabled(false) // closes the idle connections
	herr := hsrv.Shutdown(sctx)
	if gsrv != nil {
		stopped := make(chan struct{})
		go func() { gsrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			gsrv.Stop()
		}
	}
	if msrv != nil {
		msrv.Close()
	}
	if err := errors.Join(herr, serr); err != nil {
		log.Error("requests did not finish in time", "err", err)
		return exitError
	}
	log.Info("stopped")
	return exitOK
}

// notReadyWhile answers GET /v2/health/ready with 503 while loading is set,
// and passes every request on to next otherwise.
func notReadyWhile(loading *atomic.Bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if loading.Load() && r.URL.Path == "/v2/health/ready" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// defaultPlanCache is the user's cache folder's kiln/plans (a temporary
// folder's when the system has none).
func defaultPlanCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "kiln", "plans")
}

// planLoader builds each model version's engine with the options its
// config asks for, through the plan cache. The end of ctx (kiln serve's:
// SIGTERM) stops a build.
// bundledModel is the model kiln serve serves without --model-repository:
// the bundled tinycnn, built into a plan (through the plan cache) as a
// repository's models are, unless --no-build (load nil) runs its graph as
// it is.
func bundledModel(load repository.ModelLoader) (*repository.Model, error) {
	if load == nil {
		return repository.FromBytes("tinycnn", examples.TinyCNNModel)
	}
	dir, err := os.MkdirTemp("", "kiln-bundled-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir) // the engine does not read the file once loaded
	path := filepath.Join(dir, "tinycnn", "1", "model.onnx")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, examples.TinyCNNModel, 0o644); err != nil {
		return nil, err
	}
	km, err := load(path, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: model tinycnn: %w", repository.ErrModel, err)
	}
	cfg, err := repository.Complete("tinycnn", nil, km)
	if err != nil {
		km.Close()
		return nil, err
	}
	return &repository.Model{Name: "tinycnn", Config: cfg, Versions: []repository.Version{{Number: 1, Model: km}}}, nil
}

func planLoader(ctx context.Context, c *kiln.PlanCache, log *slog.Logger) repository.ModelLoader {
	return func(path string, cfg *repository.Config) (*kiln.Model, error) {
		o, err := repository.BuildOptions(filepath.Dir(filepath.Dir(path)), cfg)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		m, res, err := c.Load(ctx, path, o)
		if err != nil {
			return nil, err
		}
		how := "built"
		if res.Hit {
			how = "cached plan"
		}
		args := []any{"model", path, "plan", res.Path, "took", time.Since(start)}
		if res.Rebuilt != "" {
			args = append(args, "rebuilt because", res.Rebuilt)
		}
		log.Info("engine "+how, args...)
		return m, nil
	}
}
