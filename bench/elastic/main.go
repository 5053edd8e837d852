package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	kiln, prometheus string
	chart            string
	values           []string
	out              string
	phases           []phase
	window           time.Duration
	scale            float64
	sync             time.Duration
	cpu              string
	model            string
	keep             bool
	// concurrency: the phases' numbers are kiln perf concurrencies instead
	// of request rates
	concurrency bool
	maxThreads  int
	// repository is the replicas' --model-repository (empty: the bundled
	// tinycnn); inputData and binary are kiln perf's --input-data and --binary
	onnx, repository, inputData string
	binary                      bool
	cpuPeriod                   time.Duration
}

// phase is a stretch of constant load: kiln perf at a request rate (or a
// concurrency).
type phase struct {
	D    time.Duration
	Load int
}

func parsePhases(s string) ([]phase, error) {
	var out []phase
	for _, f := range strings.Split(s, ",") {
		ds, cs, ok := strings.Cut(strings.TrimSpace(f), ":")
		d, err1 := time.ParseDuration(ds)
		c, err2 := strconv.Atoi(cs)
		if !ok || err1 != nil || err2 != nil || d <= 0 || c < 1 {
			return nil, fmt.Errorf("phase %q: want DURATION:LOAD, e.g. 60s:50", f)
		}
		out = append(out, phase{d, c})
	}
	return out, nil
}

// parseCPU reads a Kubernetes CPU quantity (250m, 0.5, 1) as cfs_quota_us
// for a period of 100 ms; "" or 0 is no limit.
func parseCPU(s string) (int, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	var cores float64
	var err error
	if m, ok := strings.CutSuffix(s, "m"); ok {
		var v int
		v, err = strconv.Atoi(m)
		cores = float64(v) / 1000
	} else {
		cores, err = strconv.ParseFloat(s, 64)
	}
	if err != nil || cores <= 0 || math.IsInf(cores, 0) || cores > 1024 {
		return 0, fmt.Errorf("cpu limit %q: want a CPU quantity such as 250m or 0.5", s)
	}
	return max(int(cores*100000), 1000), nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var o options
	var values stringList
	fs := flag.NewFlagSet("elastic", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: go run ./bench/elastic [flags]

The elastic loop of the Helm chart, with real parts on one machine: kiln serve replicas behind
kiln gateway (its --backends-file standing for the EndpointSlices), a real Prometheus scraping
them, kiln perf driving a load that rises and falls, and the HorizontalPodAutoscaler's
algorithm applied, every sync period, to the chart's HPA metric as prometheus-adapter computes
it (the adapter rule's query, sent to Prometheus' HTTP API). Replicas start and are deleted as
Kubernetes does it: ready before they join the endpoints; out of the endpoints, preStop sleep,
SIGTERM (kiln serve drains), SIGKILL at the grace period. Writes OUT/elastic-loop.csv, .svg and .md.

flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.kiln, "kiln", "kiln", "the kiln binary")
	fs.StringVar(&o.prometheus, "prometheus", "prometheus", "the Prometheus binary (Debian's prometheus package)")
	fs.StringVar(&o.chart, "chart", "deploy/helm/kiln", "the Helm chart whose HPA, adapter rule, server command and drain are used")
	fs.Var(&values, "f", "a values file for the chart (repeatable)")
	fs.StringVar(&o.out, "out", "bench/results", "folder for elastic-loop.csv, elastic-loop.svg and elastic-loop.md")
	phases := fs.String("phases", "60s:40,240s:300,600s:40", "the load: DURATION:LOAD,... of kiln perf, one after the other: LOAD is requests per second (or, with --concurrency, a concurrency)")
	fs.BoolVar(&o.concurrency, "concurrency", false, "the phases' loads are kiln perf concurrencies (a closed loop) instead of request rates")
	fs.IntVar(&o.maxThreads, "max-threads", 32, "kiln perf's --max-threads in request-rate mode: the most requests in flight")
	fs.DurationVar(&o.window, "window", 5*time.Second, "kiln perf's --measurement-interval: one row of the CSV per window")
	fs.Float64Var(&o.scale, "time-scale", 1, "divide the durations of the loop (HPA windows and periods, sync period, rate window, scrape interval, probe period, phases, windows) by this, to run the same loop faster; the preStop sleep is divided down to 2 s at least (the gateway re-reads its backends every second), the drain is not")
	fs.DurationVar(&o.sync, "sync-period", 15*time.Second, "the HPA controller's sync period (kube-controller-manager --horizontal-pod-autoscaler-sync-period)")
	fs.StringVar(&o.cpu, "cpu-limit", "100m", "each replica's CPU limit, as a pod's resources.limits.cpu (a cgroup v1 cpu quota; needs root; 0: none)")
	fs.StringVar(&o.model, "m", "tinycnn", "the model kiln perf sends to (the chart's default serves the bundled tinycnn)")
	fs.StringVar(&o.onnx, "onnx", "", "serve this ONNX file as model -m from a model repository (--model-repository of the replicas; empty: the bundled tinycnn, as the chart's default)")
	fs.StringVar(&o.inputData, "input-data", "", "kiln perf's --input-data (empty: random inputs)")
	fs.BoolVar(&o.binary, "binary", false, "kiln perf --binary: tensors as binary data instead of JSON")
	fs.DurationVar(&o.cpuPeriod, "cpu-period", 100*time.Millisecond, "the CFS period of the CPU limit (the kubelet's --cpu-cfs-quota-period)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work folder (logs, Prometheus data)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	o.values = values
	var err error
	if o.phases, err = parsePhases(*phases); err != nil {
		fmt.Fprintln(os.Stderr, "elastic:", err)
		os.Exit(2)
	}
	if o.scale <= 0 || math.IsInf(o.scale, 0) || math.IsNaN(o.scale) {
		fmt.Fprintln(os.Stderr, "elastic: --time-scale must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "elastic:", err)
		os.Exit(1)
	}
	fmt.Println(res.summaryLine())
	if res.lost() > 0 {
		os.Exit(1)
	}
}

// sample is one kiln perf window and the cluster at its end.
type sample struct {
	T                  float64 // seconds from the start, at the end of the window
	Phase              int
	Load               int     // the phase's request rate or concurrency
	Throughput         float64 // inferences/s
	RequestRate        float64 // requests/s answered in the window
	LoadAvg            float64 // the machine's 1-minute load average
	P95, P99           float64 // ms
	Errors             int64
	Replicas, Ready    int
	Leaving            int
	Metric             float64 // the HPA metric's average per pod at the last sync
	Desired            int     // the HPA's desired replicas at the last sync
	HasMetric, HasSync bool
}

// syncRecord is one HPA sync.
type syncRecord struct {
	T        float64
	Current  int
	Average  float64
	Metric   int
	Desired  int
	Reason   string
	Err      string
	Pods     int
	WithData int
}

// result is a whole run.
type result struct {
	opts       options
	chart      *Chart
	hpa        *HPA
	query      string
	start      time.Time
	samples    []sample
	syncs      []syncRecord
	events     []string
	exits      []exitRecord
	perfTotals []perfTotals
	gateway    gatewayCounts
	peak       int
}

type perfTotals struct {
	Load             int
	Requests, Errors int64
	rates            []float64 // requests/s of each window
}

func (r *result) lost() int64 {
	var n int64
	for _, p := range r.perfTotals {
		n += p.Errors
	}
	return n + r.gateway.failed
}

func (r *result) summaryLine() string {
	var req, errs int64
	for _, p := range r.perfTotals {
		req += p.Requests
		errs += p.Errors
	}
	return fmt.Sprintf("elastic loop: %d requests, %d failed (kiln perf), %d answered other than 200 by the gateway, replicas 2..%d, wrote %s",
		req, errs, r.gateway.failed, r.peak, filepath.Join(r.opts.out, "elastic-loop.{csv,svg,md}"))
}

func run(ctx context.Context, o options, logw io.Writer) (*result, error) {
	ch, err := loadChart(o.chart, o.values...)
	if err != nil {
		return nil, err
	}
	h, err := NewHPA(ch.HPA)
	if err != nil {
		return nil, err
	}
	h.Scale(o.scale)
	quota, err := parseCPU(o.cpu)
	if err != nil {
		return nil, err
	}
	if o.cpuPeriod < time.Millisecond || o.cpuPeriod > time.Second {
		return nil, fmt.Errorf("--cpu-period %s: want 1ms..1s", o.cpuPeriod)
	}
	quota = int(float64(quota) * float64(o.cpuPeriod) / float64(100*time.Millisecond))
	for _, p := range []*string{&o.onnx, &o.inputData} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return nil, err
			}
		}
	}
	for _, b := range []*string{&o.kiln, &o.prometheus} {
		p, err := exec.LookPath(*b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", *b, err)
		}
		if *b, err = filepath.Abs(p); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "kiln-elastic-")
	if err != nil {
		return nil, err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	res := &result{opts: o, chart: ch, hpa: h, start: time.Now(), peak: h.Min}
	var mu sync.Mutex
	logf := func(format string, args ...any) {
		line := fmt.Sprintf("%6.1fs ", time.Since(res.start).Seconds()) + fmt.Sprintf(format, args...)
		mu.Lock()
		res.events = append(res.events, line)
		mu.Unlock()
		fmt.Fprintln(logw, line)
	}
	scaled := func(d time.Duration) time.Duration { return time.Duration(float64(d) / o.scale) }
	if o.onnx != "" {
		o.repository = filepath.Join(dir, "models")
		if err := os.MkdirAll(filepath.Join(o.repository, o.model, "1"), 0o755); err != nil {
			return nil, err
		}
		if err := os.Symlink(o.onnx, filepath.Join(o.repository, o.model, "1", "model.onnx")); err != nil {
			return nil, err
		}
	}
	args := ch.ServerArgs
	if o.repository != "" {
		args = append(append([]string{}, args...), "--model-repository="+o.repository)
	}
	c := &cluster{kiln: o.kiln, dir: dir, args: args, cpuPeriod: int(o.cpuPeriod / time.Microsecond), preStop: max(scaled(ch.PreStop), min(ch.PreStop, 2*time.Second)), grace: ch.Grace,
		probe: max(scaled(5*time.Second), 100*time.Millisecond), cpuQuota: quota, log: logf}
	if quota > 0 {
		c.cgroupDir = fmt.Sprintf("/sys/fs/cgroup/cpu/kiln-elastic-%d", os.Getpid())
		if err := os.Mkdir(c.cgroupDir, 0o755); err != nil {
			return nil, fmt.Errorf("a CPU limit per replica needs a writable cgroup v1 cpu controller (root), or --cpu-limit 0: %w", err)
		}
		defer os.Remove(c.cgroupDir)
	}
	if err := c.writeEndpoints(); err != nil {
		return nil, err
	}
	defer c.stopAll()
	logf("chart %s: HPA on %s, target %g per pod, replicas %d..%d, scale-up window %s, scale-down window %s; preStop %s, grace %s; SLO p99 %s",
		o.chart, ch.Metric, h.Target, h.Min, h.Max, h.Up.Window, h.Down.Window, c.preStop, c.grace, ch.SLO)

	// the Deployment at minReplicas
	if err := c.start(ctx, h.Min); err != nil {
		return nil, err
	}
	// the gateway, as the chart runs it
	gp, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	gwAddr, gwMetrics := fmt.Sprintf("127.0.0.1:%d", gp[0]), fmt.Sprintf("127.0.0.1:%d", gp[1])
	gwLog, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		return nil, err
	}
	defer gwLog.Close()
	gw := exec.Command(o.kiln, "gateway", "--backends-file="+c.backendsFile(), "--host=127.0.0.1",
		"--http-port="+strconv.Itoa(gp[0]), "--grpc-port=-1", "--metrics-port="+strconv.Itoa(gp[1]), "--policy="+ch.GatewayPolicy)
	gw.Stdout, gw.Stderr = gwLog, gwLog
	if err := gw.Start(); err != nil {
		return nil, err
	}
	defer func() {
		gw.Process.Signal(syscall.SIGTERM)
		gw.Wait()
	}()
	prom, err := startPrometheus(ctx, o.prometheus, dir, c.targetsFile(), gwMetrics, scaled(ch.ScrapeInterval))
	if err != nil {
		return nil, err
	}
	defer prom.stop()
	// ready: every replica behind the gateway
	if err := waitFor(ctx, 120*time.Second, func() bool {
		_, ready, _, _ := c.state()
		if ready < h.Min {
			return false
		}
		resp, err := http.Get("http://" + gwAddr + "/v2/models/" + o.model + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return nil, fmt.Errorf("the first %d replicas and the gateway not ready: %w (logs in %s)", h.Min, err, dir)
	}
	logf("gateway at %s, Prometheus at %s, %d replicas ready", gwAddr, prom.addr, h.Min)
	// what the gateway counted before the load (the readiness checks above)
	base, err := readGatewayCounts(ctx, "http://"+gwMetrics+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	res.start = time.Now()
	res.query = adapterQuery(scaleRangeWindows(ch.MetricsQuery, o.scale), "kiln", []string{"POD..."})

	// the HPA controller
	var last struct {
		sync.Mutex
		avg     float64
		desired int
		ok      bool
	}
	hctx, hstop := context.WithCancel(ctx)
	var hwg sync.WaitGroup
	hwg.Go(func() {
		tk := time.NewTicker(scaled(o.sync))
		defer tk.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-tk.C:
			}
			now := time.Now()
			spec, _, _, pods := c.state()
			rec := syncRecord{T: now.Sub(res.start).Seconds(), Current: spec, Pods: len(pods)}
			vals, err := prom.query(hctx, adapterQuery(scaleRangeWindows(ch.MetricsQuery, o.scale), "kiln", pods), "pod")
			if err != nil {
				if hctx.Err() != nil {
					return
				}
				rec.Err = err.Error()
				res.syncs = append(res.syncs, rec)
				logf("hpa: %v", err)
				continue
			}
			rec.WithData = len(vals)
			d, err := h.Evaluate(now, spec, pods, vals)
			if err != nil {
				rec.Err = err.Error()
				res.syncs = append(res.syncs, rec)
				logf("hpa: %v", err)
				continue
			}
			rec.Average, rec.Metric, rec.Desired, rec.Reason = d.Average, d.Metric, d.Desired, d.Reason
			res.syncs = append(res.syncs, rec)
			last.Lock()
			last.avg, last.desired, last.ok = d.Average, d.Desired, true
			last.Unlock()
			switch {
			case d.Desired > spec:
				logf("hpa: %s %.2f per pod (target %g) over %d pods: %d -> %d replicas (%s)", ch.Metric, d.Average, h.Target, len(vals), spec, d.Desired, d.Reason)
				if err := c.start(hctx, d.Desired-spec); err != nil {
					logf("scale up: %v", err)
				}
			case d.Desired < spec:
				logf("hpa: %s %.2f per pod (target %g) over %d pods: %d -> %d replicas (%s)", ch.Metric, d.Average, h.Target, len(vals), spec, d.Desired, d.Reason)
				if err := c.remove(spec - d.Desired); err != nil {
					logf("scale down: %v", err)
				}
			}
			res.peak = max(res.peak, d.Desired)
		}
	})

	// the load
	var loadErr error
	for i, ph := range o.phases {
		if ctx.Err() != nil {
			break
		}
		logf("load: kiln perf at %s for %s", o.loadName(ph.Load), scaled(ph.D))
		tot, err := runPerf(ctx, o, dir, i, gwAddr, ph, func(w perfWindow) {
			spec, ready, leaving, _ := c.state()
			last.Lock()
			s := sample{T: time.Since(res.start).Seconds(), Phase: i, Load: ph.Load, Throughput: w.throughput, LoadAvg: loadAvg(),
				P95: w.p95, P99: w.p99, Errors: w.errors, Replicas: spec, Ready: ready, Leaving: leaving,
				Metric: last.avg, Desired: last.desired, HasMetric: last.ok}
			last.Unlock()
			res.samples = append(res.samples, s)
		})
		if err != nil {
			loadErr = err
			break
		}
		// the requests per second of each window, from the JSON report
		k := 0
		for j := range res.samples {
			if res.samples[j].Phase == i && k < len(tot.rates) {
				res.samples[j].RequestRate = tot.rates[k]
				k++
			}
		}
		res.perfTotals = append(res.perfTotals, tot)
	}
	hstop()
	hwg.Wait()
	// replicas being deleted finish their drain
	c.draining.Wait()
	res.gateway, err = readGatewayCounts(ctx, "http://"+gwMetrics+"/metrics")
	if err != nil {
		logf("gateway metrics: %v", err)
	}
	res.gateway = res.gateway.since(base)
	c.mu.Lock()
	res.exits = append(res.exits, c.exits...)
	c.mu.Unlock()
	if loadErr != nil {
		return nil, fmt.Errorf("kiln perf: %w (logs in %s)", loadErr, dir)
	}
	if err := res.write(); err != nil {
		return nil, err
	}
	return res, nil
}

func waitFor(ctx context.Context, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// loadAvg is the machine's load average over the last minute (0 where
// /proc/loadavg cannot be read).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// loadName says what a phase's load is.
func (o options) loadName(n int) string {
	if o.concurrency {
		return fmt.Sprintf("concurrency %d", n)
	}
	return fmt.Sprintf("%d requests/s", n)
}

// perfWindow is one progress line of kiln perf.
type perfWindow struct {
	throughput, p95, p99 float64
	errors               int64
}

var progressLine = regexp.MustCompile(`window \d+/\d+: ([0-9.]+) infer/s, p95 ([0-9.]+) ms, p99 ([0-9.]+) ms, (\d+) errors`)

// runPerf runs kiln perf for one phase: its windows never agree
// (--stability-percentage tiny), so it runs --max-trials windows; each
// progress line is a sample; the JSON report gives every request's count.
func runPerf(ctx context.Context, o options, dir string, i int, addr string, ph phase, each func(perfWindow)) (perfTotals, error) {
	win := time.Duration(float64(o.window) / o.scale)
	n := max(int(math.Round(float64(ph.D)/float64(o.window))), 3)
	js := filepath.Join(dir, fmt.Sprintf("perf-%d.json", i))
	args := []string{"perf", "-m", o.model, "-u", addr, "--measurement-interval", win.String(),
		"--max-trials", strconv.Itoa(n), "--stability-percentage", "0.000001", "--progress", "--json", js}
	if o.inputData != "" {
		args = append(args, "--input-data", o.inputData)
	}
	if o.binary {
		args = append(args, "--binary")
	}
	if o.concurrency {
		args = append(args, "--concurrency-range", strconv.Itoa(ph.Load))
	} else {
		args = append(args, "--request-rate-range", strconv.Itoa(ph.Load), "--max-threads", strconv.Itoa(o.maxThreads))
	}
	cmd := exec.CommandContext(ctx, o.kiln, args...)
	out, err := os.Create(filepath.Join(dir, fmt.Sprintf("perf-%d.txt", i)))
	if err != nil {
		return perfTotals{}, err
	}
	defer out.Close()
	cmd.Stdout = out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return perfTotals{}, err
	}
	if err := cmd.Start(); err != nil {
		return perfTotals{}, err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		fmt.Fprintln(out, sc.Text())
		m := progressLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var w perfWindow
		w.throughput, _ = strconv.ParseFloat(m[1], 64)
		w.p95, _ = strconv.ParseFloat(m[2], 64)
		w.p99, _ = strconv.ParseFloat(m[3], 64)
		w.errors, _ = strconv.ParseInt(m[4], 10, 64)
		each(w)
	}
	if err := cmd.Wait(); err != nil {
		return perfTotals{}, fmt.Errorf("%v: see %s", err, out.Name())
	}
	b, err := os.ReadFile(js)
	if err != nil {
		return perfTotals{}, err
	}
	var rep struct {
		Requests int64 `json:"requests"`
		Errors   int64 `json:"errors"`
		Steps    []struct {
			Windows []struct {
				Duration time.Duration `json:"duration_ns"`
				Requests int64         `json:"requests"`
			} `json:"windows"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return perfTotals{}, err
	}
	tot := perfTotals{Load: ph.Load, Requests: rep.Requests, Errors: rep.Errors}
	for _, st := range rep.Steps {
		for _, w := range st.Windows {
			if w.Duration > 0 {
				tot.rates = append(tot.rates, float64(w.Requests)/w.Duration.Seconds())
			}
		}
	}
	return tot, nil
}

// gatewayCounts is what the gateway counted over the run.
type gatewayCounts struct {
	byCode  map[string]float64
	retries map[string]float64
	reject  map[string]float64
	failed  int64
}

// since is what was counted after base.
func (g gatewayCounts) since(base gatewayCounts) gatewayCounts {
	out := gatewayCounts{byCode: map[string]float64{}, retries: map[string]float64{}, reject: map[string]float64{}}
	for _, m := range []struct{ to, a, b map[string]float64 }{{out.byCode, g.byCode, base.byCode},
		{out.retries, g.retries, base.retries}, {out.reject, g.reject, base.reject}} {
		for k, v := range m.a {
			if d := v - m.b[k]; d != 0 {
				m.to[k] = d
			}
		}
	}
	out.failed = g.failed - base.failed
	return out
}

var (
	sampleLine = regexp.MustCompile(`^(kiln_gateway_requests_total|kiln_gateway_retries_total|kiln_gateway_rejected_total)\{([^}]*)\} (\S+)$`)
	labelPair  = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

func readGatewayCounts(ctx context.Context, url string) (gatewayCounts, error) {
	g := gatewayCounts{byCode: map[string]float64{}, retries: map[string]float64{}, reject: map[string]float64{}}
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return g, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return g, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := sampleLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		labels := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			labels[p[1]] = p[2]
		}
		switch m[1] {
		case "kiln_gateway_requests_total":
			g.byCode[labels["code"]] += v
		case "kiln_gateway_retries_total":
			g.retries[labels["reason"]] += v
		case "kiln_gateway_rejected_total":
			g.reject[labels["reason"]] += v
		}
	}
	for code, v := range g.byCode {
		if code != "200" && code != "OK" {
			g.failed += int64(v)
		}
	}
	for _, v := range g.reject {
		g.failed += int64(v)
	}
	return g, sc.Err()
}
