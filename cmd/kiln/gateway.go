package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kilnai/kiln/gateway"
)

// gatewayCmd is "kiln gateway": a model-aware KServe v2 gateway in front of
// kiln serve backends.
func gatewayCmd(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return runGateway(ctx, args, nil)
}

// runGateway serves until ctx ends, then drains. When started is not nil
// it receives the HTTP, metrics and gRPC addresses once they listen.
func runGateway(ctx context.Context, args []string, started chan<- [3]string) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var backends []gateway.Endpoint
	fs.Func("backend", "a backend `SPEC` (repeatable): http=HOST:PORT[,grpc=HOST:PORT][,metrics=HOST:PORT], or HOST:PORT for HTTP alone; gRPC clients are routed only to backends with a grpc address, and metrics give the backend's queue depth", func(v string) error {
		e, err := gateway.ParseEndpoint(v)
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), gateway.ErrConfig.Error()+": "))
		}
		backends = append(backends, e)
		return nil
	})
	backendsFile := fs.String("backends-file", "", "a file of backends, one --backend spec a line ('#' comments), re-read every second: edit it to add or remove backends")
	dnsName := fs.String("dns", "", "a DNS `NAME` (such as a headless Service) re-resolved every --dns-interval: each address is a backend with the --backend-ports")
	dnsInterval := fs.Duration("dns-interval", 5*time.Second, "how often --dns is resolved again")
	k8sService := fs.String("k8s-service", "", "a Kubernetes Service `NAMESPACE/NAME`: its EndpointSlices (watched in the cluster, with the pod's service account) give the backends, with the ports named http, grpc and metrics, else the --backend-ports")
	ports := fs.String("backend-ports", "http=8000,grpc=8001,metrics=8002", "the backends' ports for --dns and --k8s-service")
	host := fs.String("host", "", "address to listen on (empty: all interfaces)")
	httpPort := fs.Int("http-port", 9000, "KServe v2 HTTP port (0: any free port)")
	grpcPort := fs.Int("grpc-port", 9001, "KServe v2 gRPC port (0: any free port, -1: off)")
	metricsPort := fs.Int("metrics-port", 9002, "Prometheus metrics port of the gateway's own metrics (0: any free port, -1: off)")
	policy := fs.String("policy", "least", "balancing policy: "+strings.Join(gateway.PolicyNames(), ", ")+" (least: fewest requests in flight; p2c: the less loaded of two at random, counting the backends' own queues; roundrobin)")
	pollInterval := fs.Duration("poll-interval", 250*time.Millisecond, "how often each backend's readiness, repository index and queue depth are read")
	ejectAfter := fs.Int("eject-after", 3, "consecutive failures (lost connections) that eject a backend; a refused connection ejects at once")
	ejectTime := fs.Duration("eject-time", 2*time.Second, "how long an ejected backend gets no traffic before polls may readmit it")
	slowStart := fs.Duration("slow-start", 3*time.Second, "how long a new or readmitted backend takes to get its full share of traffic (0: none)")
	maxAttempts := fs.Int("max-attempts", 3, "how many backends one request may be tried on")
	retryRatio := fs.Float64("retry-ratio", 0.2, "retry budget: retries may reach this share of the requests (or --min-retries a second)")
	minRetries := fs.Int("min-retries", 20, "retry budget: retries a second always allowed")
	noRetryLost := fs.Bool("no-retry-lost", false, "never retry a request whose connection broke before an answer (by default a stateless one, without sequence_id, is retried: it may have run, with no effect but its answer)")
	maxQueue := fs.Int64("max-queue", 0, "a backend's queue capacity as the gateway counts it (requests in flight plus its own queue): when every eligible backend is at it, answer 429 / RESOURCE_EXHAUSTED without sending (0: no limit; backends' own 429s are tried elsewhere)")
	backendToken := fs.String("backend-token", "", "bearer token sent to the backends in place of the client's (default: $KILN_BACKEND_TOKEN; empty forwards the client's Authorization)")
	var clients []gateway.Client
	fs.Func("client", "an admitted client, `NAME:TOKEN[:RATE[:BURST[:PRIORITY]]]` (repeatable): with any, requests need \"Authorization: Bearer TOKEN\" of one (401 otherwise) and are held to its rate, requests a second, as a token bucket (429 over it; RATE 0 or none: no limit); its inference requests that set no priority of their own get the priority level PRIORITY (1 the highest; the model's dynamic_batching needs that many priority_levels, else the backend answers 400)", func(v string) error {
		c, err := gateway.ParseClient(v)
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), gateway.ErrConfig.Error()+": "))
		}
		clients = append(clients, c)
		return nil
	})
	metricsToken := fs.String("metrics-token", "", "bearer token required on the metrics port (default: $KILN_METRICS_TOKEN)")
	pprofOn := fs.Bool("pprof", false, "serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics port, behind its token")
	exitTimeout := fs.Duration("exit-timeout", 30*time.Second, "how long requests in flight may take to finish after SIGTERM")
	grace := fs.Duration("shutdown-grace", 0, "after SIGTERM, how long the ports stay open answering 503 (not ready) before they close, so that load balancers see it")
	maxBytes := fs.Int64("max-request-bytes", 64<<20, "largest request body accepted")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected arguments %q", pos)
	}
	sources := 0
	for _, on := range []bool{len(backends) > 0, *backendsFile != "", *dnsName != "", *k8sService != ""} {
		if on {
			sources++
		}
	}
	if sources != 1 {
		return usageError(fs, "want one source of backends: --backend (repeatable), --backends-file, --dns or --k8s-service")
	}
	if *backendToken == "" {
		*backendToken = os.Getenv("KILN_BACKEND_TOKEN")
	}
	if *metricsToken == "" {
		*metricsToken = os.Getenv("KILN_METRICS_TOKEN")
	}
	pp, err := parsePorts(*ports)
	if err != nil {
		return usageError(fs, "--backend-ports %q: %v", *ports, err)
	}
	if *slowStart == 0 {
		*slowStart = -1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var disc gateway.Discoverer
	switch {
	case len(backends) > 0:
		disc = gateway.Static(backends)
	case *backendsFile != "":
		// a file that cannot be read or parsed is an error now, before listening
		data, err := os.ReadFile(*backendsFile)
		if err == nil {
			_, err = gateway.ReadEndpoints(data)
		}
		if err != nil {
			return fail("gateway: --backends-file: %v", err)
		}
		disc = gateway.File{Path: *backendsFile, Logger: log}
	case *dnsName != "":
		disc = gateway.DNS{Name: *dnsName, HTTPPort: pp["http"], GRPCPort: pp["grpc"], MetricsPort: pp["metrics"],
			Interval: *dnsInterval, Logger: log}
	default:
		ns, name, ok := strings.Cut(*k8sService, "/")
		if !ok || ns == "" || name == "" {
			return usageError(fs, "--k8s-service %q: want NAMESPACE/NAME", *k8sService)
		}
		d, err := k8sDiscoverer(ns, name, pp, log)
		if err != nil {
			return fail("gateway: --k8s-service: %v", err)
		}
		disc = d
	}
	g, err := gateway.New(gateway.Options{Policy: *policy, Logger: log, PollInterval: *pollInterval,
		FailureThreshold: *ejectAfter, EjectTime: *ejectTime, SlowStart: *slowStart, MaxAttempts: *maxAttempts,
		RetryRatio: *retryRatio, MinRetries: *minRetries, NoRetryLost: *noRetryLost, MaxQueue: *maxQueue,
		BackendToken: *backendToken, Clients: clients, MaxRequestBytes: *maxBytes})
	if err != nil {
		return usageError(fs, "%s", strings.TrimPrefix(err.Error(), gateway.ErrConfig.Error()+": "))
	}
	defer g.Close()

	lp, err := listenPorts(*host, *httpPort, *grpcPort, *metricsPort)
	if err != nil {
		return fail("gateway: %v", err)
	}
	hl, gl, ml := lp.http, lp.grpc, lp.metrics
	closeAll := lp.close
	dctx, stopDiscovery := context.WithCancel(context.Background())
	defer stopDiscovery()
	derr := make(chan error, 1)
	go func() { derr <- g.Run(dctx, disc) }()

	var draining atomic.Bool
	timeouts := httpTimeouts{read: 30 * time.Second, idle: 2 * time.Minute, closing: &draining}
	// the gateway's own HTTP/1.1 loop, with net/http's server for the
	// connections it hands over (WebSocket upgrades and the unusual)
	hsrv := gateway.NewHTTPServer(g, timeouts.server(g.Handler(), log))
	errc := make(chan error, 3)
	go func() { errc <- hsrv.Serve(hl) }()
	var gsrv *grpc.Server
	var hs *health.Server
	gaddr := ""
	if gl != nil {
		gsrv = grpc.NewServer(append(g.GRPCServerOptions(), grpc.MaxRecvMsgSize(int(min(*maxBytes, 1<<31-1))))...)
		hs = health.NewServer()
		healthpb.RegisterHealthServer(gsrv, hs)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				st := healthpb.HealthCheckResponse_NOT_SERVING
				if g.Ready() {
					st = healthpb.HealthCheckResponse_SERVING
				}
				hs.SetServingStatus("", st)
				hs.SetServingStatus("inference.GRPCInferenceService", st)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
		gaddr = gl.Addr().String()
		go func() { errc <- gsrv.Serve(gl) }()
	}
	var msrv *http.Server
	maddr := ""
	if ml != nil {
		msrv = timeouts.server(g.MetricsHandler(*metricsToken, *pprofOn), log)
		maddr = ml.Addr().String()
		go func() { errc <- msrv.Serve(ml) }()
	}
	log.Info("listening", "http", hl.Addr().String(), "grpc", gaddr, "metrics", maddr, "policy", *policy)
	if started != nil {
		started <- [3]string{hl.Addr().String(), maddr, gaddr}
	}
	select {
	case <-ctx.Done():
	case err := <-derr:
		if err == nil {
			err = errors.New("discovery ended")
		}
		closeAll()
		if gsrv != nil {
			gsrv.Stop()
		}
		return fail("gateway: backends: %v", err)
	case err := <-errc:
		closeAll()
		if gsrv != nil {
			gsrv.Stop()
		}
		return fail("gateway: %v", err)
	}
	// Drain: not ready at once (health 503, NOT_SERVING), new requests 503
	// with Connection: close; the requests in flight finish.
	log.Info("shutting down", "exit-timeout", *exitTimeout)
	g.Drain()
	draining.Store(true)
	if hs != nil {
		hs.Shutdown()
	}
	sctx, cancel := context.WithTimeout(context.Background(), *exitTimeout)
	defer cancel()
	if *grace > 0 {
		select {
		case <-time.After(*grace):
		case <-sctx.Done():
		}
	}
	hsrv.SetKeepAlivesEnabled(false)
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
	stopDiscovery()
	if herr != nil {
		log.Error("requests did not finish in time", "err", herr)
		return exitError
	}
	log.Info("stopped")
	return exitOK
}

// parsePorts reads "http=8000,grpc=8001,metrics=8002" (grpc and metrics
// may be left out or 0).
func parsePorts(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("want KEY=PORT, got %q", part)
		}
		switch k {
		case "http", "grpc", "metrics":
		default:
			return nil, fmt.Errorf("unknown key %q (want http, grpc, metrics)", k)
		}
		p, err := strconv.Atoi(v)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("%s port %q is not a port number", k, v)
		}
		out[k] = p
	}
	if out["http"] == 0 {
		return nil, errors.New("no http port")
	}
	return out, nil
}
