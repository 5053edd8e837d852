package main

import (
	"context"
	"errors"
	"flag"
	"github.com/kilnai/kiln"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kilnai/kiln/device/cuda"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/serve"
	"github.com/kilnai/kiln/serve/grpcapi"
	"github.com/kilnai/kiln/serve/httpapi"
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
// receives the HTTP, metrics and gRPC addresses once they listen.
func runServe(ctx context.Context, args []string, started chan<- [3]string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	repo := fs.String("model-repository", "", "model repository folder (Triton layout); empty serves the bundled example as \"tinycnn\"")
	host := fs.String("host", "", "address to listen on (empty: all interfaces)")
	httpPort := fs.Int("http-port", 8000, "KServe v2 HTTP port (0: any free port)")
	grpcPort := fs.Int("grpc-port", 8001, "KServe v2 gRPC port (0: any free port, -1: off)")
	metricsPort := fs.Int("metrics-port", 8002, "Prometheus metrics port (0: any free port, -1: off)")
	exitTimeout := fs.Duration("exit-timeout", 30*time.Second, "how long in-flight requests may take to finish after SIGTERM")
	grace := fs.Duration("shutdown-grace", 0, "after SIGTERM and the drain of in-flight requests, how long the ports stay open answering \"not ready\" (503 to new inference requests) before they close, so that clients and load balancers see 503 rather than a closed port (within --exit-timeout)")
	control := fs.String("model-control-mode", "none", "none: load the repository once; poll: reload changed models; explicit: the repository API loads and unloads")
	pollEvery := fs.Duration("repository-poll", 15*time.Second, "how often --model-control-mode poll looks for changes")
	tlsCert := fs.String("tls-cert", "", "PEM certificate file: serve HTTPS (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key file for --tls-cert")
	inferToken := fs.String("infer-token", "", "bearer token required for inference and metadata (default: $KILN_INFER_TOKEN)")
	adminToken := fs.String("admin-token", "", "bearer token required for the repository API (default: $KILN_ADMIN_TOKEN)")
	maxBytes := fs.Int64("max-request-bytes", httpapi.DefaultMaxRequestBytes, "largest request body accepted")
	gpuMetrics := fs.Bool("allow-gpu-metrics", true, "export nv_gpu_* metrics read through NVML (absent without an NVIDIA driver)")
	planCache := fs.String("plan-cache", defaultPlanCache(), "folder of built engine plans, keyed by model, config, device and kiln version: a restart loads them instead of building")
	noBuild := fs.Bool("no-build", false, "serve ONNX graphs as they are, without building engines (no optimization, no plan cache)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if len(pos) > 0 {
		return fail("serve: unexpected arguments %q", pos)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return fail("serve: --tls-cert and --tls-key go together")
	}
	if *inferToken == "" {
		*inferToken = os.Getenv("KILN_INFER_TOKEN")
	}
	if *adminToken == "" {
		*adminToken = os.Getenv("KILN_ADMIN_TOKEN")
	}
	switch *control {
	case "none", "poll", "explicit":
	default:
		return fail("serve: --model-control-mode %q: want none, poll or explicit", *control)
	}
	if *control == "poll" && (*repo == "" || *pollEvery <= 0) {
		return fail("serve: --model-control-mode poll needs --model-repository and a positive --repository-poll")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	m := metrics.New(nil)
	if *gpuMetrics && *metricsPort >= 0 {
		m.EnableGPU(log, cuda.Options{}) // without a GPU: logged, and no nv_gpu_* metrics
	}
	opts := serve.Options{Repository: *repo, Logger: log, Observer: m}
	if !*noBuild {
		opts.Loader = planLoader(&kiln.PlanCache{Dir: *planCache}, log)
	}
	s := serve.New(opts)
	m.SetPending(s)
	if *repo == "" {
		rm, err := repository.FromBytes("tinycnn", examples.TinyCNNModel)
		if err == nil {
			err = s.Add(rm)
		}
		if err != nil {
			return fail("serve: %v", err)
		}
	} else if err := s.LoadAll(ctx); err != nil {
		// a broken model is reported in the index; the others serve
		log.Error("not every model loaded", "err", err)
	}

	hl, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*httpPort)))
	if err != nil {
		return fail("serve: %v", err)
	}
	hsrv := &http.Server{Handler: httpapi.New(s, httpapi.Options{MaxRequestBytes: *maxBytes, DisableModelControl: *control != "explicit",
		InferToken: *inferToken, AdminToken: *adminToken}), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() {
		if *tlsCert != "" {
			errc <- hsrv.ServeTLS(hl, *tlsCert, *tlsKey)
			return
		}
		errc <- hsrv.Serve(hl)
	}()
	var gsrv *grpc.Server
	var hs *health.Server
	gaddr := ""
	if *grpcPort >= 0 {
		gl, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*grpcPort)))
		if err != nil {
			hsrv.Close()
			return fail("serve: grpc: %v", err)
		}
		var opts []grpc.ServerOption
		if *tlsCert != "" {
			creds, err := credentials.NewServerTLSFromFile(*tlsCert, *tlsKey)
			if err != nil {
				hsrv.Close()
				return fail("serve: grpc: %v", err)
			}
			opts = append(opts, grpc.Creds(creds))
		}
		opts = append(opts, grpc.MaxRecvMsgSize(int(min(*maxBytes, 1<<31-1))))
		gsrv = grpc.NewServer(opts...)
		grpcapi.Register(gsrv, s, *control == "explicit")
		hs = health.NewServer()
		// gRPC health follows readiness (every model loaded and warmed up),
		// checked every second; NOT_SERVING for good once shutting down.
		setHealth := func() {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if s.Ready() {
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
	if *metricsPort >= 0 {
		ml, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*metricsPort)))
		if err != nil {
			hsrv.Close()
			return fail("serve: metrics: %v", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		maddr = ml.Addr().String()
		go func() { errc <- msrv.Serve(ml) }()
	}
	if *control == "poll" {
		go s.Poll(ctx, *pollEvery)
	}
	log.Info("serving", "http", hl.Addr().String(), "grpc", gaddr, "metrics", maddr)
	if started != nil {
		started <- [3]string{hl.Addr().String(), maddr, gaddr}
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		s.Shutdown(context.Background())
		if gsrv != nil {
			gsrv.Stop()
		}
		return fail("serve: %v", err)
	}
	// Ready turns false at once; new inference requests get 503; the
	// requests in flight finish within the exit timeout.
	log.Info("shutting down", "exit-timeout", *exitTimeout)
	if hs != nil {
		hs.Shutdown() // gRPC health: NOT_SERVING
	}
	sctx, cancel := context.WithTimeout(context.Background(), *exitTimeout)
	defer cancel()
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
// config asks for, through the plan cache.
func planLoader(c *kiln.PlanCache, log *slog.Logger) repository.ModelLoader {
	return func(path string, cfg *repository.Config) (*kiln.Model, error) {
		o, err := repository.BuildOptions(filepath.Dir(filepath.Dir(path)), cfg)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		m, res, err := c.Load(context.Background(), path, o)
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
