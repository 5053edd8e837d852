// Command reqpath measures what kiln's request path costs (issue 14, item
// 6): the bundled tinycnn model served by kiln serve over HTTP JSON and
// gRPC, against bare servers that do only what the protocol needs (net/http
// decoding the same JSON body with encoding/json; grpc-go answering the
// same ModelInfer message) and against the engine alone (kiln's Go API, one
// execution context). It measures p50 latency at one client and throughput
// at 16 clients, closed loop over loopback, all targets alternating in each
// round, and prints a markdown report of the medians over the rounds.
//
//	go build -o /tmp/kiln ./cmd/kiln && go run ./bench/reqpath -kiln /tmp/kiln
//
// bench/reqpath.sh runs it and writes bench/results/request-path.md. The
// bare servers run in processes of their own (this program, re-executed as
// "reqpath bare-http ADDR" or "reqpath bare-grpc ADDR"), as kiln serve does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/tensor"
)

// allTargets are the targets in the order each round measures them. The
// gw-* targets go through kiln gateway in front of the kiln serve of the
// kiln-* targets (the gateway process's CPU time is theirs).
var allTargets = []string{"engine", "engine-idle", "engine-t1", "engine-idle-t1", "bare-http", "kiln-http", "gw-http", "bare-grpc", "kiln-grpc", "gw-grpc", "bare-grpc-engine",
	"engine-syscall", "engine-flush", "engine-newg", "engine-hop", "engine-hop2", "engine-stay", "bare-grpc-spin", "bare-grpc-decode", "bare-grpc-engine-pre", "bare-grpc-engine-locked", "bare-grpc-engine-warm", "bare-grpc-engine-diag", "bare-grpc-p1", "bare-grpc-engine-p1"}

// grpcVariants are the bare gRPC servers after bare-grpc and
// bare-grpc-engine: variations of bare-grpc-engine's handler that split
// what running the engine in a handler costs (see bareVariant in bare.go).
var grpcVariants = []string{"grpc-spin", "grpc-decode", "grpc-engine-pre", "grpc-engine-locked", "grpc-engine-warm", "grpc-engine-diag", "grpc-p1", "grpc-engine-p1"}

// defaultTargets are the targets measured unless -targets says otherwise.
var defaultTargets = []string{"engine", "bare-http", "kiln-http", "bare-grpc", "kiln-grpc"}

// idleGap is how long the engine-idle target's client sleeps before each
// run: about the time between two runs of a one-client server (the
// request path's work and the client's, on loopback).
const idleGap = 100 * time.Microsecond

// isEngine reports whether target t is the engine alone (one client only,
// no server process).
func isEngine(t string) bool { return t == "engine" || strings.HasPrefix(t, "engine-") }

// oldPrefix names the targets served by the -kiln-old binary.
const oldPrefix = "old-"

// usesKiln reports whether target t is served by a kiln binary (kiln serve,
// or kiln gateway in front of it).
func usesKiln(t string) bool {
	return strings.HasPrefix(t, "kiln-") || strings.HasPrefix(t, "gw-")
}

func main() {
	if isBare(os.Args) {
		l, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "reqpath:", err)
			os.Exit(1)
		}
		if os.Args[1] == "bare-http" {
			err = serveBareHTTP(l)
		} else {
			err = serveBareGRPC(l, strings.TrimPrefix(os.Args[1], "bare-"), len(os.Args) == 4)
		}
		fmt.Fprintln(os.Stderr, "reqpath:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// isBare reports whether args start a bare server: "bare-http ADDR",
// "bare-grpc ADDR" or "bare-grpc-VARIANT ADDR [built]".
func isBare(args []string) bool {
	return len(args) >= 3 && strings.HasPrefix(args[1], "bare-") && slices.Contains(allTargets, args[1]) &&
		(len(args) == 3 || len(args) == 4 && strings.HasPrefix(args[1], "bare-grpc-") && args[3] == "built")
}

type config struct {
	kiln string
	// kilnOld, when set, is a second kiln binary (say, before a change):
	// each kiln-* and gw-* target is measured with it too, as old-TARGET,
	// just before the target itself in every round
	kilnOld string
	// rate, when positive, adds a window at a fixed rate (requests/s, open
	// loop): latency and the server's CPU time per request at that rate
	rate     float64
	rounds   int
	clients  int
	warmup   time.Duration
	duration time.Duration
	targets  []string
	pprof    bool
	// serveArgs are more arguments for kiln serve
	serveArgs []string
	// built runs the engine target on tinycnn built as kiln serve builds
	// its bundled model and a repository's (else the graph as loaded, as
	// kiln serve --no-build runs it)
	built bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reqpath", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.kiln, "kiln", "", "the kiln binary to serve with (kiln serve, the bundled tinycnn); needed for the kiln-* targets")
	fs.StringVar(&c.kilnOld, "kiln-old", "", "a second kiln binary (say, built before a change): every kiln-* and gw-* target is measured with it too, as old-TARGET, alternating with the -kiln one")
	fs.Float64Var(&c.rate, "rate", 0, "also measure each server target at this fixed rate (requests/s, open loop, constant spacing): p50, p99 and the server process's CPU time per request (0: off)")
	fs.IntVar(&c.rounds, "rounds", 5, "rounds; each measures every target in turn, and the report gives medians over rounds")
	fs.IntVar(&c.clients, "clients", 16, "clients of the throughput measurement (0: one client only, no throughput measurement)")
	fs.DurationVar(&c.warmup, "warmup", 300*time.Millisecond, "load before each measured window, not counted")
	fs.DurationVar(&c.duration, "duration", 2*time.Second, "each measured window")
	targets := fs.String("targets", strings.Join(defaultTargets, ","), "comma-separated targets among "+strings.Join(allTargets, ", "))
	fs.BoolVar(&c.pprof, "pprof", false, "start kiln serve (and kiln gateway) with --pprof and print their profile addresses on stderr")
	engineKind := fs.String("engine", "built", "the engine target's tinycnn: built (by kiln's builder with a batch of 1..8, as kiln serve builds its bundled model and a repository's) or graph (loaded as it is, as kiln serve --no-build runs it)")
	serveArgs := fs.String("serve-args", "", "more arguments for kiln serve, separated by spaces (such as --model-repository DIR, whose model tinycnn is then served)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "reqpath: unexpected arguments %q\n", fs.Args())
		return 2
	}
	c.serveArgs = strings.Fields(*serveArgs)
	switch *engineKind {
	case "graph":
	case "built":
		c.built = true
	default:
		fmt.Fprintf(stderr, "reqpath: -engine %q: want graph or built\n", *engineKind)
		return 2
	}
	for _, t := range strings.Split(*targets, ",") {
		if !slices.Contains(allTargets, t) {
			fmt.Fprintf(stderr, "reqpath: unknown target %q (want some of %s)\n", t, strings.Join(allTargets, ", "))
			return 2
		}
		if c.kilnOld != "" && usesKiln(t) {
			c.targets = append(c.targets, oldPrefix+t)
		}
		c.targets = append(c.targets, t)
	}
	if c.rounds < 1 || c.clients < 0 || c.duration <= 0 || c.warmup < 0 || c.rate < 0 {
		fmt.Fprintln(stderr, "reqpath: -rounds and -clients must be at least 1, -duration positive, -rate not negative")
		return 2
	}
	needKiln := slices.ContainsFunc(c.targets, usesKiln)
	if needKiln && c.kiln == "" {
		fmt.Fprintln(stderr, "reqpath: the kiln-* and gw-* targets need -kiln PATH (go build -o PATH ./cmd/kiln)")
		return 2
	}
	rep, err := bench(ctx, c, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "reqpath:", err)
		return 1
	}
	rep.write(stdout)
	return 0
}

// freeAddr returns a loopback address with a port free now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// proc is a server process started by the benchmark.
type proc struct {
	cmd     *exec.Cmd
	cleanup func() // after it stopped (nil: nothing)
}

func (p *proc) stop() {
	if p.cleanup != nil {
		defer p.cleanup()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

func start(ctx context.Context, log io.Writer, name string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd: cmd}, nil
}

// waitReady polls check until it succeeds, ctx ends or 60 s pass.
func waitReady(ctx context.Context, what string, check func() error) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not get ready: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func httpReady(url string) func() error {
	return func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}

func dialReady(addr string) func() error {
	return func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
}

// engineTarget runs tinycnn with kiln's Go API on one execution context,
// as one instance of kiln serve does: the bundled model loaded as kiln
// serve loads it, or built as kiln serve builds a repository's model.
//
// The engine-idle target (gap > 0) is the same run after the client's
// thread slept gap (not counted): the engine as it runs in a server,
// where the request path's work, the client's and the idle core come
// between two runs, instead of back to back with its code and data in the
// core's caches.
func engineTarget(ctx context.Context, img *tensor.Tensor, built bool, names ...string) (map[string]target, func(), error) {
	m, err := kiln.LoadBytes(examples.TinyCNNModel)
	if built {
		m, err = kiln.BuildBytes(ctx, modelName, examples.TinyCNNModel, kiln.BuildOptions{MaxBatch: 8})
	}
	if err != nil {
		return nil, nil, err
	}
	in := map[string]*tensor.Tensor{inputName: img}
	out := map[string]target{}
	for _, name := range names {
		t := target{name: name, pid: os.Getpid(), newCaller: func() (caller, func(), error) {
			c := m.NewContext()
			if strings.HasSuffix(name, "-t1") {
				// kiln serve --intra-op-threads 1: every layer on the
				// caller's thread, no pool worker woken
				if err := cpu.SetThreads(1); err != nil {
					return nil, nil, err
				}
				return func(ctx context.Context) error {
					out, err := c.Run(ctx, in)
					if err == nil && out[outputName] == nil {
						err = fmt.Errorf("engine: no output %s", outputName)
					}
					return err
				}, func() { cpu.SetThreads(0) }, nil
			}
			switch name {
			case "engine-hop", "engine-stay":
				return pinnedCaller(c, c, in, name == "engine-hop")
			case "engine-hop2":
				return pinnedCaller(c, m.NewContext(), in, true)
			}
			if name == "engine-newg" {
				return func(ctx context.Context) error {
					var out map[string]*tensor.Tensor
					var err error
					done := make(chan struct{})
					go func() {
						out, err = c.Run(ctx, in)
						close(done)
					}()
					<-done
					if err == nil && out[outputName] == nil {
						err = fmt.Errorf("engine: no output %s", outputName)
					}
					return err
				}, func() {}, nil
			}
			return func(ctx context.Context) error {
				out, err := c.Run(ctx, in)
				if err == nil && out[outputName] == nil {
					err = fmt.Errorf("engine: no output %s", outputName)
				}
				return err
			}, func() {}, nil
		}}
		switch name {
		case "engine-idle", "engine-idle-t1":
			t.pause = idleGap
		case "engine-syscall":
			t.between = syscallBetween
		case "engine-flush":
			t.between = flushBetween
		}
		out[name] = t
	}
	return out, func() { m.Close() }, nil
}

func bench(ctx context.Context, c config, log io.Writer) (*report, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	img := image(1)
	body := jsonBody(img)
	greq, err := grpcRequest(img)
	if err != nil {
		return nil, err
	}
	targets := map[string]target{}
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	has := func(t string) bool { return slices.Contains(c.targets, t) }
	if engines := slices.DeleteFunc(slices.Clone(c.targets), func(t string) bool { return !isEngine(t) }); len(engines) > 0 {
		ts, closeModel, err := engineTarget(ctx, img, c.built, engines...)
		if err != nil {
			return nil, err
		}
		defer closeModel()
		maps.Copy(targets, ts)
	}
	for _, kind := range append([]string{"http", "grpc", "grpc-engine"}, grpcVariants...) {
		if !has("bare-" + kind) {
			continue
		}
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		args := []string{"bare-" + kind, addr}
		if strings.HasPrefix(kind, "grpc-") && c.built {
			args = append(args, "built")
		}
		p, err := start(ctx, log, self, args...)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		if err := waitReady(ctx, "bare-"+kind, dialReady(addr)); err != nil {
			return nil, err
		}
		if kind == "http" {
			targets["bare-http"] = httpTarget("bare-http", "http://"+addr+"/v2/models/"+modelName+"/infer", body, p.cmd.Process.Pid)
		} else {
			targets["bare-"+kind] = grpcTarget("bare-"+kind, addr, greq, p.cmd.Process.Pid)
		}
	}
	for _, set := range []struct{ prefix, bin string }{{oldPrefix, c.kilnOld}, {"", c.kiln}} {
		if set.bin == "" || !slices.ContainsFunc(c.targets, func(t string) bool {
			return usesKiln(strings.TrimPrefix(t, oldPrefix)) && strings.HasPrefix(t, set.prefix)
		}) {
			continue
		}
		ps, ts, err := startKiln(ctx, c, set.bin, set.prefix, has(set.prefix+"gw-http") || has(set.prefix+"gw-grpc"), body, greq, log)
		procs = append(procs, ps...)
		if err != nil {
			return nil, err
		}
		maps.Copy(targets, ts)
	}
	rep := &report{cfg: c, bodyBytes: len(body), rows: map[string][]row{}}
	for r := range c.rounds {
		for _, name := range c.targets {
			t := targets[name]
			one, err := measure(ctx, t, 1, c.warmup, c.duration)
			if err != nil {
				return nil, err
			}
			var many, fixed result
			if !isEngine(name) && c.clients > 0 {
				if many, err = measure(ctx, t, c.clients, c.warmup, c.duration); err != nil {
					return nil, err
				}
				if c.rate > 0 {
					if fixed, err = measureRate(ctx, t, c.rate, c.clients, c.warmup, c.duration); err != nil {
						return nil, err
					}
				}
			}
			rep.rows[name] = append(rep.rows[name], row{one: one, many: many, fixed: fixed})
			fmt.Fprintf(log, "round %d %-13s p50@1 %8v  req/s@%d %7.0f", r+1, name, one.p50.Round(time.Microsecond), c.clients, many.rps)
			if one.cpu > 0 && !isEngine(name) {
				fmt.Fprintf(log, "  CPU/req@1 %v", one.cpu.Round(100*time.Nanosecond))
			}
			if one.sched.ok {
				fmt.Fprintf(log, "  @1 per req: %.2f switches (%.2f preempted), %v runnable waiting, %.2f faults", one.sched.switches, one.sched.preempted, one.sched.runWait.Round(100*time.Nanosecond), one.sched.faults)
			}
			if one.inModel > 0 {
				fmt.Fprintf(log, "  @1: in model %v, engine %v", one.inModel.Round(100*time.Nanosecond), one.compute.Round(100*time.Nanosecond))
			}
			if many.cpu > 0 {
				fmt.Fprintf(log, "  CPU/req %v", many.cpu.Round(time.Microsecond))
			}
			if many.driver > 0 {
				fmt.Fprintf(log, "  driver CPU/req %v", many.driver.Round(time.Microsecond))
			}
			if many.perRun > 0 {
				fmt.Fprintf(log, "  requests/run %.2f", many.perRun)
			}
			if c.rate > 0 && !isEngine(name) {
				fmt.Fprintf(log, "  @%.0f/s: p50 %v, CPU/req %v", c.rate, fixed.p50.Round(time.Microsecond), fixed.cpu.Round(time.Microsecond))
			}
			fmt.Fprintln(log)
		}
	}
	rep.load = loadAvg()
	return rep, nil
}

// loadAvg returns the machine's load averages ("" when unknown).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// row is one round's measurements of one target.
type row struct {
	one, many result
	fixed     result // at -rate
}

type report struct {
	cfg       config
	bodyBytes int
	rows      map[string][]row
	load      string
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// col returns f of each round of target t.
func (r *report) col(t string, f func(row) float64) []float64 {
	var out []float64
	for _, x := range r.rows[t] {
		out = append(out, f(x))
	}
	return out
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func fmtUs(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " us"
}

// label is the report's name of target t.
func label(t string) string {
	if base, ok := strings.CutPrefix(t, oldPrefix); ok {
		return labels[base] + " (-kiln-old)"
	}
	return labels[t]
}

var labels = map[string]string{
	"engine":         "engine alone (kiln Go API, one context)",
	"engine-idle":    "engine alone, each run after " + fmtUs(us(idleGap)) + " asleep (not counted)",
	"engine-t1":      "engine alone on one intra-op thread (as --intra-op-threads 1)",
	"engine-idle-t1": "engine alone on one intra-op thread, each run after " + fmtUs(us(idleGap)) + " asleep (not counted)",
	"engine-syscall": "engine alone, each run after one cheap system call (getppid; not counted)",
	"engine-flush":   "engine alone, each run after touching one byte in each of 4096 pages (not counted)",
	"engine-newg":    "engine alone, each run on a new goroutine (as a gRPC handler's; its start and end counted)",
	"engine-hop":     "engine alone, runs alternating between two threads pinned to two cores (hand-off counted)",
	"engine-hop2":    "engine-hop with a context (arena) per thread",
	"engine-stay":    "engine alone, runs alternating between two threads pinned to one core (hand-off counted)",
	"bare-http":      "bare net/http + encoding/json",
	"kiln-http":      "kiln serve, HTTP JSON",
	"bare-grpc":      "bare grpc-go",
	"kiln-grpc":      "kiln serve, gRPC",
	"gw-http":        "kiln gateway in front of kiln serve, HTTP JSON",
	"gw-grpc":        "kiln gateway in front of kiln serve, gRPC",
	// a reference, not one of the issue's: the least a gRPC server that
	// runs the model does
	"bare-grpc-engine": "bare grpc-go running the engine in its handler",
	// its variations, to split what the engine costs in a handler
	"bare-grpc-spin":          "bare grpc-go, its handler busy for " + fmtUs(us(spinFor)) + " (no memory touched)",
	"bare-grpc-decode":        "bare grpc-go decoding the input and encoding an output as bare-grpc-engine does, no engine",
	"bare-grpc-engine-pre":    "bare grpc-go running the engine on a pre-made input, bare reply",
	"bare-grpc-engine-locked": "bare grpc-go handing the engine run to a goroutine locked to its OS thread",
	"bare-grpc-engine-warm":   "bare grpc-go running the engine twice in its handler (first run untimed warm-up of the second)",
	"bare-grpc-p1":            "bare grpc-go on one P (GOMAXPROCS 1)",
	"bare-grpc-engine-p1":     "bare grpc-go running the engine in its handler, on one P (GOMAXPROCS 1)",
	"bare-grpc-engine-diag":   "bare-grpc-engine, each run's thread watched (getrusage, getcpu: four system calls a request)",
}

func (r *report) write(w io.Writer) {
	c := r.cfg
	fmt.Fprintf(w, "Medians over %d rounds; each round measures every target in turn: %v of one client (p50, p99),\n", c.rounds, c.duration)
	fmt.Fprintf(w, "then %v of %d clients (throughput), closed loop over loopback, after %v of load not counted.\n", c.duration, c.clients, c.warmup)
	fmt.Fprintf(w, "HTTP body: %d bytes of JSON (3,072 FP32 numbers); gRPC: raw_input_contents (12,288 bytes).\n", r.bodyBytes)
	fmt.Fprintf(w, "\"CPU/req\" is the server process's user+system time per request at %d clients.\n", c.clients)
	served := "the bundled tinycnn (built into a plan with a batch of 1..8; no config.pbtxt, completed as Triton completes an ONNX model's: max_batch_size 8, dynamic batching without delay, two CPU instances)"
	if len(c.serveArgs) > 0 {
		served = "tinycnn, started as `kiln serve " + strings.Join(c.serveArgs, " ") + "`"
	}
	engine := "tinycnn's graph as loaded (kiln.LoadBytes)"
	if c.built {
		engine = "tinycnn built by kiln's builder, batch 1..8 (kiln.BuildBytes)"
	}
	fmt.Fprintf(w, "kiln serve serves %s; the engine target runs %s.\n", served, engine)
	if slices.ContainsFunc(c.targets, func(t string) bool { return strings.Contains(t, "gw-") }) {
		fmt.Fprintln(w, "The gateway targets go through `kiln gateway` (policy least, slow start off) in front of that kiln serve; their CPU/req is the gateway process's alone.")
	}
	if c.kilnOld != "" {
		fmt.Fprintln(w, "Targets marked (-kiln-old) are served by the -kiln-old binary, measured just before the same target of the -kiln binary in every round.")
	}
	rate := ""
	if c.rate > 0 {
		rate = fmt.Sprintf(" p50 at %.0f/s | p99 at %.0f/s | CPU/req at %.0f/s |", c.rate, c.rate, c.rate)
		fmt.Fprintf(w, "\"at %.0f/s\": a window of %v at a fixed rate of %.0f requests/s (open loop, evenly spaced, at most %d in flight), after %v not counted.\n", c.rate, c.duration, c.rate, c.clients, c.warmup)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| target | p50, 1 client | p99, 1 client | req/s, %d clients | p50, %d clients | CPU/req, %d clients |%s\n", c.clients, c.clients, c.clients, rate)
	fmt.Fprint(w, "| --- | --- | --- | --- | --- | --- |")
	if c.rate > 0 {
		fmt.Fprint(w, " --- | --- | --- |")
	}
	fmt.Fprintln(w)
	for _, t := range c.targets {
		p50 := median(r.col(t, func(x row) float64 { return us(x.one.p50) }))
		p99 := median(r.col(t, func(x row) float64 { return us(x.one.p99) }))
		if isEngine(t) {
			cpu := median(r.col(t, func(x row) float64 { return us(x.one.cpu) }))
			cpuCell := fmtUs(cpu) + " (1 client)"
			if strings.HasPrefix(t, "engine-idle") {
				cpuCell = "-" // its sleeps' system time is the driver's
			}
			fmt.Fprintf(w, "| %s | %s | %s | - | - | %s |", label(t), fmtUs(p50), fmtUs(p99), cpuCell)
			if c.rate > 0 {
				fmt.Fprint(w, " - | - | - |")
			}
			fmt.Fprintln(w)
			continue
		}
		rps := median(r.col(t, func(x row) float64 { return x.many.rps }))
		p50m := median(r.col(t, func(x row) float64 { return us(x.many.p50) }))
		cpu := median(r.col(t, func(x row) float64 { return us(x.many.cpu) }))
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %s | %s |", label(t), fmtUs(p50), fmtUs(p99), rps, fmtUs(p50m), fmtUs(cpu))
		if c.rate > 0 {
			fp50 := median(r.col(t, func(x row) float64 { return us(x.fixed.p50) }))
			fp99 := median(r.col(t, func(x row) float64 { return us(x.fixed.p99) }))
			fcpu := median(r.col(t, func(x row) float64 { return us(x.fixed.cpu) }))
			fmt.Fprintf(w, " %s | %s | %s |", fmtUs(fp50), fmtUs(fp99), fmtUs(fcpu))
		}
		fmt.Fprintln(w)
	}
	var driver []string
	for _, t := range c.targets {
		if v := median(r.col(t, func(x row) float64 { return us(x.many.driver) })); v > 0 {
			driver = append(driver, fmt.Sprintf("%s %s", label(t), fmtUs(v)))
		}
	}
	if len(driver) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "The load driver's own CPU time per request at %d clients (medians): %s.\n", c.clients, strings.Join(driver, "; "))
	}
	var perRun []string
	for _, t := range c.targets {
		if v := median(r.col(t, func(x row) float64 { return x.many.perRun })); v > 0 {
			perRun = append(perRun, fmt.Sprintf("%s %.2f", label(t), v))
		}
	}
	if len(perRun) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Requests a model run served at %d clients (kiln serve's statistics: inferences / executions, the batches its scheduler formed; medians): %s.\n", c.clients, strings.Join(perRun, "; "))
	}
	var inModel []string
	for _, t := range c.targets {
		in := median(r.col(t, func(x row) float64 { return us(x.one.inModel) }))
		comp := median(r.col(t, func(x row) float64 { return us(x.one.compute) }))
		if in > 0 {
			inModel = append(inModel, fmt.Sprintf("%s %.1f us in the model, %.1f us of it the engine's run", label(t), in, comp))
		}
	}
	if len(inModel) > 0 {
		var engs []string
		if v := median(r.col("engine", func(x row) float64 { return us(x.one.p50) })); v > 0 {
			engs = append(engs, fmt.Sprintf("p50 %.1f us back to back", v))
		}
		if v := median(r.col("engine-idle", func(x row) float64 { return us(x.one.p50) })); v > 0 {
			engs = append(engs, fmt.Sprintf("%.1f us after %s asleep", v, fmtUs(us(idleGap))))
		}
		eng := ""
		if len(engs) > 0 {
			eng = " (the engine alone: " + strings.Join(engs, ", ") + ")"
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Time in the model at one client (kiln serve's statistics: success and compute_infer per request, means over the window; medians)%s: %s.\n", eng, strings.Join(inModel, "; "))
	}
	crit := r.criteria()
	if len(crit) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "The issues' criteria (14: kiln serve against the bare servers; 12: the gateway's added p50), each the median of the per-round values (a round's targets ran minutes apart at most):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| criterion | measured | target | met |")
		fmt.Fprintln(w, "| --- | --- | --- | --- |")
		for _, k := range crit {
			met := "yes"
			if !k.ok() {
				met = "**no**"
			}
			if k.unit == "us" {
				fmt.Fprintf(w, "| %s | %.0f us | %s %.0f us | %s |\n", k.name, k.value, k.op, k.bound, met)
				continue
			}
			fmt.Fprintf(w, "| %s | %.2f | %s %.2f | %s |\n", k.name, k.value, k.op, k.bound, met)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every round (p50 at 1 client / req/s at", c.clients, "clients / the server's CPU per request at", c.clients, "clients, where known):")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| round |")
	for _, t := range c.targets {
		fmt.Fprintf(w, " %s |", t)
	}
	fmt.Fprint(w, "\n| --- |")
	for range c.targets {
		fmt.Fprint(w, " --- |")
	}
	fmt.Fprintln(w)
	for i := range c.rounds {
		fmt.Fprintf(w, "| %d |", i+1)
		for _, t := range c.targets {
			x := r.rows[t][i]
			if isEngine(t) {
				fmt.Fprintf(w, " %s |", fmtUs(us(x.one.p50)))
			} else if x.many.cpu > 0 {
				fmt.Fprintf(w, " %s / %.0f / %s |", fmtUs(us(x.one.p50)), x.many.rps, fmtUs(us(x.many.cpu)))
			} else {
				fmt.Fprintf(w, " %s / %.0f |", fmtUs(us(x.one.p50)), x.many.rps)
			}
		}
		fmt.Fprintln(w)
	}
	if r.load != "" {
		fmt.Fprintf(w, "\nLoad average at the end: %s.\n", r.load)
	}
}

type criterion struct {
	name  string
	value float64
	op    string // "<=" or ">="
	bound float64
	unit  string // "" for a ratio, "us"
}

func (k criterion) ok() bool {
	if k.op == "<=" {
		return k.value <= k.bound
	}
	return k.value >= k.bound
}

// criteria returns issue 14's two criteria per protocol and issue 12's
// gateway overhead per protocol, for the targets measured (for the
// -kiln-old binary too).
func (r *report) criteria() []criterion {
	var out []criterion
	for _, tp := range []struct{ prefix, proto string }{{"", "http"}, {oldPrefix, "http"}, {"", "grpc"}, {oldPrefix, "grpc"}} {
		proto := tp.proto
		bare, k := r.rows["bare-"+proto], r.rows[tp.prefix+"kiln-"+proto]
		if len(bare) == 0 || len(k) == 0 {
			continue
		}
		name := map[string]string{"http": "HTTP JSON", "grpc": "gRPC"}[proto]
		if tp.prefix != "" {
			name += " (-kiln-old)"
		}
		if eng := r.rows["engine"]; len(eng) > 0 {
			var ratios []float64
			for i := range k {
				ratios = append(ratios, float64(k[i].one.p50)/float64(bare[i].one.p50+eng[i].one.p50))
			}
			out = append(out, criterion{name: name + ": kiln p50 / (bare p50 + engine p50), 1 client", value: median(ratios), op: "<=", bound: 1.2})
		}
		if r.cfg.clients == 0 {
			continue // (-clients 0: no throughput measured)
		}
		var ratios []float64
		for i := range k {
			ratios = append(ratios, k[i].many.rps/bare[i].many.rps)
		}
		out = append(out, criterion{name: fmt.Sprintf("%s: kiln req/s / bare req/s, %d clients", name, r.cfg.clients), value: median(ratios), op: ">=", bound: 0.8})
	}
	for _, prefix := range []string{oldPrefix, ""} {
		for _, proto := range []string{"http", "grpc"} {
			k, gw := r.rows[prefix+"kiln-"+proto], r.rows[prefix+"gw-"+proto]
			if len(k) == 0 || len(gw) == 0 {
				continue
			}
			name := map[string]string{"http": "HTTP JSON", "grpc": "gRPC"}[proto]
			if prefix != "" {
				name += " (-kiln-old)"
			}
			var added []float64
			for i := range k {
				added = append(added, us(gw[i].one.p50-k[i].one.p50))
			}
			out = append(out, criterion{name: name + ": gateway p50 - kiln serve p50, 1 client", value: median(added), op: "<=", bound: 100, unit: "us"})
		}
	}
	return out
}
