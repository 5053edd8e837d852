package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kilnai/kiln/perf"
)

// perfCmd is "kiln perf": the load generator (package perf). The first
// SIGINT or SIGTERM ends the run early with a report of what was measured;
// a second one kills it.
func perfCmd(args []string) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	stop, ended := make(chan struct{}), make(chan struct{})
	defer close(ended)
	go func() {
		select {
		case <-sig:
			signal.Stop(sig) // the next one: the default action
			close(stop)
		case <-ended:
		}
	}()
	return runPerf(context.Background(), args, stop)
}

// runPerf runs kiln perf; closing stop ends the run early, with a report.
func runPerf(ctx context.Context, args []string, stop <-chan struct{}) int {
	fs := flag.NewFlagSet("perf", flag.ContinueOnError)
	model := fs.String("m", "", "the `model` to measure (required)")
	version := fs.String("model-version", "", "the model's `version` (default: the server's choice)")
	url := fs.String("u", "", "the server's `host:port` (default localhost:8000 for http and ws, localhost:8001 for grpc)")
	protocol := fs.String("i", "http", "the `protocol`: http, grpc or ws (the WebSocket stream /v2/models/{m}/stream)")
	binary := fs.Bool("binary", false, "http: send inputs with the binary data extension and ask for binary outputs (default JSON)")
	streaming := fs.Bool("streaming", false, "grpc: send requests over ModelStreamInfer streams, one per worker (default unary calls)")
	token := fs.String("token", "", "bearer token sent with every request (default: $KILN_INFER_TOKEN)")
	concurrency := fs.String("concurrency-range", "", "concurrency mode: `START:END:STEP` workers that each send a request when their last one answered (default 1)")
	rate := fs.String("request-rate-range", "", "request-rate mode: `START:END:STEP` requests per second")
	dist := fs.String("request-distribution", "constant", "request-rate mode: the `spacing` of the requests, constant or poisson")
	maxThreads := fs.Int("max-threads", 16, "request-rate mode: most requests in flight at once")
	window := fs.Duration("measurement-interval", 5*time.Second, "length of a measurement window (a Go `duration`)")
	stability := fs.Float64("stability-percentage", 10, "throughput and p95 of 3 consecutive windows must be within this `percent` of their average (0: no stability asked, every step runs --max-trials windows)")
	trials := fs.Int("max-trials", 10, "most windows per step: a step not stable by then reports its last 3 windows, marked unstable")
	noStats := fs.Bool("no-server-stats", false, "do not read the server's statistics endpoint: measure from the client's side only (for a gateway in front of several servers, which answers it for one of them)")
	batch := fs.Int("b", 1, "batch `size`: the variable first dimension of random inputs and of JSON inputs without a shape")
	shapes := shapeFlags{}
	fs.Var(shapes, "shape", "shape of an input with variable dimensions, `name:1x3x224x224` (repeatable)")
	data := fs.String("input-data", "", "inputs: a `folder` of input_N.pb files or test_data_set_N folders, or a JSON file (default: random inputs from the model's metadata)")
	caFile := fs.String("tls-ca", "", "connect with TLS (http, grpc), trusting the PEM certificates of this `file`")
	useTLS := fs.Bool("tls", false, "connect with TLS, trusting the system's certificates (also: -u https://HOST:PORT)")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline of each request")
	csvFile := fs.String("f", "", "write the results as CSV to this `file`")
	jsonFile := fs.String("json", "", "write the whole report as JSON to this `file`")
	plotFile := fs.String("plot", "", "draw latency percentiles against throughput into this `file` (.svg or .png)")
	progress := fs.Bool("progress", false, "print a progress line per window on stderr (default: only when stderr is a terminal)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected arguments %q", pos)
	}
	if *model == "" {
		return usageError(fs, "want a model: -m MODEL")
	}
	cfg := perf.Config{
		Model: *model, Version: *version, URL: *url, Protocol: *protocol, Binary: *binary, Streaming: *streaming,
		Token: *token, MaxThreads: *maxThreads, Window: *window, StabilityPercentage: *stability,
		MaxTrials: *trials, Timeout: *timeout,
		Inputs: perf.InputOptions{BatchSize: *batch, Shapes: shapes, Data: *data, Seed: 1},
		Seed:   1, NoServerStats: *noStats, Stop: stop,
	}
	switch cfg.Protocol {
	case perf.HTTP, perf.WebSocket:
		if cfg.URL == "" {
			cfg.URL = "localhost:8000"
		}
	case perf.GRPC:
		if cfg.URL == "" {
			cfg.URL = "localhost:8001"
		}
	default:
		return usageError(fs, "-i %q: want http, grpc or ws", cfg.Protocol)
	}
	if *binary && cfg.Protocol != perf.HTTP {
		return usageError(fs, "--binary is for -i http (ws is always binary)")
	}
	if *streaming && cfg.Protocol != perf.GRPC {
		return usageError(fs, "--streaming is for -i grpc (ws is always a stream)")
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv("KILN_INFER_TOKEN")
	}
	if *useTLS || *caFile != "" {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return fail("perf: --tls-ca: %v", err)
			}
			cfg.TLS.RootCAs = x509.NewCertPool()
			if !cfg.TLS.RootCAs.AppendCertsFromPEM(pem) {
				return fail("perf: --tls-ca %s: no PEM certificate in it", *caFile)
			}
		}
	}
	if *concurrency != "" && *rate != "" {
		return usageError(fs, "--concurrency-range and --request-rate-range cannot be combined")
	}
	if *rate != "" {
		r, err := perf.ParseRange(*rate)
		if err != nil {
			return usageError(fs, "--request-rate-range: %v", trimErr(err))
		}
		if cfg.Distribution, err = perf.ParseDistribution(*dist); err != nil {
			return usageError(fs, "--request-distribution: %v", trimErr(err))
		}
		cfg.RequestRate = &r
	} else {
		if *concurrency == "" {
			*concurrency = "1"
		}
		r, err := perf.ParseRange(*concurrency)
		if err != nil {
			return usageError(fs, "--concurrency-range: %v", trimErr(err))
		}
		if r.Start != float64(int(r.Start)) || r.Step != float64(int(r.Step)) {
			return usageError(fs, "--concurrency-range %s: want whole numbers", *concurrency)
		}
		cfg.Concurrency = &r
	}
	if *plotFile != "" {
		if _, err := perf.PlotFormat(*plotFile); err != nil {
			return usageError(fs, "--plot: %v", trimErr(err))
		}
	}
	if *progress || isTerminal(errOut) {
		cfg.Progress, cfg.ProgressInPlace = errOut, isTerminal(errOut)
	}
	rep, err := perf.Run(ctx, cfg)
	if err != nil {
		if msg := err.Error(); strings.HasPrefix(msg, "perf: ") {
			return fail("%s", msg)
		}
		return fail("perf: %v", err)
	}
	fmt.Fprintf(stdOut, "%s over %s at %s, %s mode, windows of %v:\n", rep.Model, protocolName(rep), rep.URL, modeName(rep), rep.Window)
	if err := perf.WriteTable(stdOut, rep); err != nil {
		return fail("perf: %v", err)
	}
	if rep.ServerStatsError != "" {
		fmt.Fprintf(errOut, "kiln perf: warning: no server-side figures: the server's statistics could not be read: %s\n", rep.ServerStatsError)
	}
	if rep.Interrupted {
		fmt.Fprintf(errOut, "kiln perf: interrupted: %d requests, %d failed; the report covers the windows measured before the signal\n", rep.Requests, rep.Errors)
	}
	for i, s := range rep.Steps {
		if rep.Interrupted && i == len(rep.Steps)-1 || cfg.StabilityPercentage == 0 {
			continue // not asked to be stable, or cut short
		}
		if !s.Stable {
			fmt.Fprintf(errOut, "kiln perf: warning: not stable within %d windows of %v at %s (the last 3 reported); try a longer --measurement-interval or --max-trials\n", cfg.MaxTrials, cfg.Window, stepName(rep, s))
		}
	}
	write := func(path string, w func(*os.File) error) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := w(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if *csvFile != "" {
		if err := write(*csvFile, func(f *os.File) error { return perf.WriteCSV(f, rep) }); err != nil {
			return fail("perf: -f: %v", err)
		}
	}
	if *jsonFile != "" {
		if err := write(*jsonFile, func(f *os.File) error { return perf.WriteJSON(f, rep) }); err != nil {
			return fail("perf: --json: %v", err)
		}
	}
	if *plotFile != "" {
		if err := perf.WritePlot(*plotFile, rep); err != nil {
			return fail("perf: --plot: %v", err)
		}
	}
	return exitOK
}

func protocolName(r *perf.Report) string {
	switch {
	case r.Binary:
		return "http (binary)"
	case r.Streaming:
		return "grpc (stream)"
	case r.Protocol == perf.HTTP:
		return "http (JSON)"
	}
	return r.Protocol
}

func modeName(r *perf.Report) string {
	if r.Mode == "request_rate" {
		return fmt.Sprintf("request-rate (%s)", r.Distribution)
	}
	return "concurrency"
}

func stepName(r *perf.Report, s perf.Step) string {
	if r.Mode == "request_rate" {
		return fmt.Sprintf("request rate %g/s", s.RequestRate)
	}
	return fmt.Sprintf("concurrency %d", s.Concurrency)
}

// trimErr drops the package's "perf: bad option: " prefix from an option's
// error.
func trimErr(err error) string {
	s := err.Error()
	return strings.TrimPrefix(s, perf.ErrConfig.Error()+": ")
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
