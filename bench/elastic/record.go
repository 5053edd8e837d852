package main

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

var (
	blue   = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 255}
	orange = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 255}
	green  = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 255}
	red    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}
	grey   = color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 255}
)

func (r *result) write() error {
	if err := os.MkdirAll(r.opts.out, 0o755); err != nil {
		return err
	}
	if err := r.writeCSV(filepath.Join(r.opts.out, "elastic-loop.csv")); err != nil {
		return err
	}
	if err := r.writePlot(filepath.Join(r.opts.out, "elastic-loop.svg")); err != nil {
		return err
	}
	return r.writeMarkdown(filepath.Join(r.opts.out, "elastic-loop.md"))
}

func (r *result) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"time_s", "load", "requests_s", "throughput_infer_s", "p95_ms", "p99_ms", "errors",
		"replicas", "replicas_ready", "replicas_terminating", "metric_per_pod", "hpa_desired", "load_average_1m"})
	for _, s := range r.samples {
		metric, desired := "", ""
		if s.HasMetric {
			metric, desired = strconv.FormatFloat(s.Metric, 'f', 3, 64), strconv.Itoa(s.Desired)
		}
		w.Write([]string{strconv.FormatFloat(s.T, 'f', 1, 64), strconv.Itoa(s.Load),
			strconv.FormatFloat(s.RequestRate, 'f', 1, 64), strconv.FormatFloat(s.Throughput, 'f', 1, 64), strconv.FormatFloat(s.P95, 'f', 2, 64),
			strconv.FormatFloat(s.P99, 'f', 2, 64), strconv.FormatInt(s.Errors, 10),
			strconv.Itoa(s.Replicas), strconv.Itoa(s.Ready), strconv.Itoa(s.Leaving), metric, desired,
			strconv.FormatFloat(s.LoadAvg, 'f', 2, 64)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func line(p *plot.Plot, name string, xy plotter.XYs, c color.Color, dashed bool) error {
	if len(xy) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	l.Color, l.Width = c, vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// steps draws a value that holds until the next sample as steps.
func steps(xy plotter.XYs) plotter.XYs {
	var out plotter.XYs
	for i, p := range xy {
		if i > 0 {
			out = append(out, plotter.XY{X: p.X, Y: xy[i-1].Y})
		}
		out = append(out, p)
	}
	return out
}

// writePlot draws three panels over time: load and replicas; p99 and the
// SLO; the HPA metric and its target.
func (r *result) writePlot(path string) error {
	var conc, tput, reps, ready, p99, metric, errs, la plotter.XYs
	top99, topM, errTotal := 0.0, r.hpa.Target*1.5, int64(0)
	for _, s := range r.samples {
		conc = append(conc, plotter.XY{X: s.T, Y: float64(s.Load)})
		tput = append(tput, plotter.XY{X: s.T, Y: s.RequestRate})
		if r.opts.concurrency {
			tput[len(tput)-1].Y = s.Throughput
		}
		la = append(la, plotter.XY{X: s.T, Y: s.LoadAvg})
		reps = append(reps, plotter.XY{X: s.T, Y: float64(s.Replicas)})
		ready = append(ready, plotter.XY{X: s.T, Y: float64(s.Ready)})
		p99 = append(p99, plotter.XY{X: s.T, Y: s.P99})
		top99 = max(top99, s.P99)
		errTotal += s.Errors
		if s.Errors > 0 {
			errs = append(errs, plotter.XY{X: s.T, Y: max(s.P99, 5)})
		}
	}
	for _, s := range r.syncs {
		if s.Err == "" {
			metric = append(metric, plotter.XY{X: s.T, Y: s.Average})
			topM = max(topM, s.Average)
		}
	}
	end := 0.0
	if n := len(r.samples); n > 0 {
		end = r.samples[n-1].T
	}
	mk := func(title, ylabel string) *plot.Plot {
		p := plot.New()
		p.Title.Text = title
		p.Y.Label.Text = ylabel
		p.X.Min, p.X.Max = 0, end
		p.Add(plotter.NewGrid())
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.XOffs, p.Legend.YOffs = vg.Points(6), -vg.Points(4)
		p.Legend.ThumbnailWidth = vg.Points(20)
		return p
	}
	p0 := mk(fmt.Sprintf("kiln elastic loop: %s through kiln gateway, load from kiln perf", r.opts.model), "requests/s")
	p0.Y.Min = 0
	offered := "offered request rate"
	if r.opts.concurrency {
		offered = "concurrency (throughput in inferences/s)"
	}
	if err := line(p0, offered, steps(conc), grey, true); err != nil {
		return err
	}
	if err := line(p0, "answered", tput, blue, false); err != nil {
		return err
	}
	if err := line(p0, "machine load average (1 min)", la, orange, false); err != nil {
		return err
	}
	p1 := mk(fmt.Sprintf("replicas: HPA %d..%d on %s, target %g per pod", r.hpa.Min, r.hpa.Max, r.chart.Metric, r.hpa.Target), "replicas")
	p1.Y.Min = 0
	if err := line(p1, "replicas (Deployment)", steps(reps), blue, false); err != nil {
		return err
	}
	if err := line(p1, "replicas ready", steps(ready), green, true); err != nil {
		return err
	}
	p2 := mk(fmt.Sprintf("client p99 per %s window (log scale); %d failed requests", r.window(), errTotal), "p99 latency (ms)")
	p2.Y.Scale, p2.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p2.Y.Min, p2.Y.Max = 5, max(top99, float64(r.chart.SLO)/1e6)*1.5
	for i := range p99 {
		p99[i].Y = max(p99[i].Y, p2.Y.Min)
	}
	if err := line(p2, "p99", p99, red, false); err != nil {
		return err
	}
	slo := float64(r.chart.SLO) / 1e6
	if err := line(p2, fmt.Sprintf("SLO %g ms (KilnP99AboveSLO)", slo), plotter.XYs{{X: 0, Y: slo}, {X: end, Y: slo}}, grey, true); err != nil {
		return err
	}
	if len(errs) > 0 {
		sc, err := plotter.NewScatter(errs)
		if err != nil {
			return err
		}
		sc.Color, sc.Shape = red, draw.CrossGlyph{}
		p2.Add(sc)
		p2.Legend.Add("window with errors", sc)
	}
	p3 := mk(r.chart.Metric+" per pod, from Prometheus (the adapter's query)", "per pod")
	p3.X.Label.Text = "time (s)"
	p3.Y.Min, p3.Y.Max = 0, topM*1.15
	if err := line(p3, "metric (HPA sync)", steps(metric), orange, false); err != nil {
		return err
	}
	tg := r.hpa.Target
	if err := line(p3, fmt.Sprintf("target %g", tg), plotter.XYs{{X: 0, Y: tg}, {X: end, Y: tg}}, grey, true); err != nil {
		return err
	}
	const w, h = 8 * vg.Inch, 11 * vg.Inch
	c := vgsvg.New(w, h)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 4, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadY: vg.Points(10),
		PadLeft: vg.Points(4), PadRight: vg.Points(8)}
	canvases := plot.Align([][]*plot.Plot{{p0}, {p1}, {p2}, {p3}}, tiles, dc)
	for i, p := range []*plot.Plot{p0, p1, p2, p3} {
		p.Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (r *result) window() time.Duration {
	return time.Duration(float64(r.opts.window) / r.opts.scale)
}

func cpuName() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func (r *result) writeMarkdown(path string) error {
	var b strings.Builder
	o := r.opts
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, "# The elastic loop: HPA on kiln's metric, with real parts\n\n")
	fmt.Fprintf(&b, "Run %s on %d cores (%s), load average at the end %s.\n\n", r.start.UTC().Format("2006-01-02 15:04Z"),
		runtime.NumCPU(), cpuName(), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	fmt.Fprintf(&b, "The command (`bash bench/elastic-loop.sh` builds kiln and runs it with the defaults below):\n\n    go run ./bench/elastic%s\n\n", r.flagsLine())
	fmt.Fprintf(&b, "![replicas, p99 and the HPA metric over time](elastic-loop.svg)\n\n")
	fmt.Fprintf(&b, "Data: [elastic-loop.csv](elastic-loop.csv), one row per %s kiln perf window.\n\n", r.window())
	fmt.Fprintf(&b, "## Setup\n\n")
	fmt.Fprintf(&b, "- From the chart (`%s` rendered with the Helm SDK%s): the HPA on `%s`, target %g per pod, "+
		"replicas %d..%d, scale-up window %s (%s), scale-down window %s (%s); prometheus-adapter's query for the metric, "+
		"sent to Prometheus' HTTP API at every sync with the pods of the Deployment:\n\n      %s\n\n",
		o.chart, valuesNote(o.values), r.chart.Metric, r.hpa.Target, r.hpa.Min, r.hpa.Max,
		r.hpa.Up.Window, policies(r.hpa.Up), r.hpa.Down.Window, policies(r.hpa.Down), r.query)
	model := "the bundled tinycnn"
	if o.onnx != "" {
		model = fmt.Sprintf("model %s from a one-model repository (`--model-repository`)", o.model)
	}
	fmt.Fprintf(&b, "- The server replicas run the chart's container args (`kiln %s`, ports and plan cache per replica, on loopback), "+
		"each in a cgroup with a CPU quota of %s (CFS period %s), as a pod's `resources.limits.cpu`; %s.\n",
		strings.Join(r.chart.ServerArgs, " "), o.cpu, o.cpuPeriod, model)
	fmt.Fprintf(&b, "- A replica joins the endpoints (the gateway's `--backends-file`, standing for the headless Service's "+
		"EndpointSlices, and Prometheus' file_sd, standing for the ServiceMonitor) when `/v2/health/ready` answers 200. "+
		"A deleted replica leaves them at once, then preStop sleeps %s, then SIGTERM starts kiln's drain, SIGKILL at the grace period %s.\n",
		r.chart.PreStop, r.chart.Grace)
	fmt.Fprintf(&b, "- `kiln gateway --policy=%s`; Prometheus %s scraping every %s; the HPA's algorithm every %s "+
		"(tolerance %g, stabilization windows, policies, min and max, pods without a value yet counted as the HPA counts them).\n",
		r.chart.GatewayPolicy, "(Debian's package)", time.Duration(float64(r.chart.ScrapeInterval)/o.scale), time.Duration(float64(o.sync)/o.scale), Tolerance)
	if o.scale != 1 {
		fmt.Fprintf(&b, "- **Time scaled by 1/%g**: the HPA's windows and periods, the sync period, the rate window, the scrape interval, the probe period and the phases are divided by %g; the preStop sleep is %s; the drain (`--exit-timeout`, `--shutdown-grace`, the grace period) is not scaled.\n", o.scale, o.scale, max(time.Duration(float64(r.chart.PreStop)/o.scale), min(r.chart.PreStop, 2*time.Second)))
	}
	proto := "HTTP JSON"
	if o.binary {
		proto = "HTTP with binary tensors"
	}
	if o.inputData != "" {
		proto += ", inputs " + filepath.Base(o.inputData)
	}
	fmt.Fprintf(&b, "- Load: kiln perf through the gateway (%s, at most %d requests in flight), one process per phase:", proto, o.maxThreads)
	for _, ph := range o.phases {
		fmt.Fprintf(&b, " %s for %s;", o.loadName(ph.Load), time.Duration(float64(ph.D)/o.scale))
	}
	fmt.Fprintf(&b, "\n\n## Result\n\n")
	var req, errs int64
	for _, p := range r.perfTotals {
		req += p.Requests
		errs += p.Errors
	}
	slo := float64(r.chart.SLO) / 1e6
	fmt.Fprintf(&b, "| phase | load | requests | failed | replicas at the end | p99 of the windows: median | max | windows under the SLO |\n|---|---|---|---|---|---|---|---|\n")
	for i, p := range r.perfTotals {
		var ws []sample
		for _, s := range r.samples {
			if s.Phase == i {
				ws = append(ws, s)
			}
		}
		if len(ws) == 0 {
			continue
		}
		med, top, under := p99Stats(ws, slo)
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %d | %.0f ms | %.0f ms | %d of %d |\n", i+1, o.loadName(p.Load), p.Requests, p.Errors,
			ws[len(ws)-1].Replicas, med, top, under, len(ws))
	}
	// the step's windows before and after the peak's replicas were all ready
	peakAt := -1.0
	for _, s := range r.samples {
		if s.Replicas == r.peak && s.Ready == r.peak {
			peakAt = s.T
			break
		}
	}
	if peakAt >= 0 {
		var before, after []sample
		ph := -1
		for _, s := range r.samples {
			if s.T <= peakAt && s.Load == maxLoad(o.phases) {
				before = append(before, s)
				ph = s.Phase
			}
		}
		for _, s := range r.samples {
			if s.T > peakAt && s.Phase == ph {
				after = append(after, s)
			}
		}
		if len(before) > 0 && len(after) > 0 {
			m1, t1, u1 := p99Stats(before, slo)
			m2, t2, u2 := p99Stats(after, slo)
			fmt.Fprintf(&b, "\nUnder the step (phase %d): until the %d replicas were ready (%.0f s), the windows' p99 had a median of %.0f ms (max %.0f ms, %d of %d windows under the %.0f ms SLO); after, a median of %.0f ms (max %.0f ms, %d of %d windows under the SLO).\n",
				ph+1, r.peak, peakAt, m1, t1, u1, len(before), slo, m2, t2, u2, len(after))
		}
	}
	fmt.Fprintf(&b, "\nAll phases: %d requests, **%d failed** (kiln perf's count of every request sent). ", req, errs)
	codes := make([]string, 0, len(r.gateway.byCode))
	for k, v := range r.gateway.byCode {
		codes = append(codes, fmt.Sprintf("%s: %.0f", k, v))
	}
	sort.Strings(codes)
	fmt.Fprintf(&b, "The gateway answered by status {%s}, retried %s, rejected %s. ", strings.Join(codes, ", "), counts(r.gateway.retries), counts(r.gateway.reject))
	fmt.Fprintf(&b, "Peak replicas %d.\n\n", r.peak)
	if len(r.exits) > 0 {
		fmt.Fprintf(&b, "Replicas deleted while serving (scale-down), each drained and exited by itself:\n\n| replica | exit code | SIGTERM to exit | killed at grace period |\n|---|---|---|---|\n")
		for _, e := range r.exits {
			fmt.Fprintf(&b, "| %s | %d | %.2f s | %v |\n", e.Name, e.Code, e.Drain.Seconds(), e.Killed)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "## Reading it\n\n"+
		"- The metric lags the load: prometheus-adapter's query is a rate over %s of samples scraped every %s, so the HPA sees a step only as the rate window fills.\n"+
		"- A new replica has no value until two scrapes are in its rate window. As the controller does, the loop counts such pods at 0 when it scales up, and the replicas that do have values still show the load from before. So the HPA can ask for more replicas than the load needs. A scale-up stabilization window (`autoscaling.scaleUp.stabilizationWindowSeconds`) damps that.\n"+
		"- Scale-down waits for the %s stabilization window, then removes pods as its policy allows (%s). Each removed replica leaves the endpoints, sleeps for the preStop, then drains (`--shutdown-grace` %s keeps its ports answering 503 before they close). So no request is sent to a replica that is going away.\n"+
		"- The p99 of a window also moves with the machine. The column `load_average_1m` of the CSV is the machine's load average. When a window has a high p99 while the metric is far below its target, the replicas' queues are short: the time went to other processes on the same cores.\n\n",
		rangeWindow.FindString(r.query), time.Duration(float64(r.chart.ScrapeInterval)/o.scale), r.hpa.Down.Window, policies(r.hpa.Down), shutdownGrace(r.chart.ServerArgs))
	fmt.Fprintf(&b, "## Events\n\n```\n%s\n```\n", strings.Join(r.events, "\n"))
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// p99Stats is the median and the largest p99 of the windows, and how many
// are at most slo (ms).
func p99Stats(ws []sample, slo float64) (median, top float64, under int) {
	v := make([]float64, 0, len(ws))
	for _, w := range ws {
		v = append(v, w.P99)
		top = max(top, w.P99)
		if w.P99 <= slo {
			under++
		}
	}
	sort.Float64s(v)
	median = v[len(v)/2]
	if len(v)%2 == 0 {
		median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return median, top, under
}

func shutdownGrace(args []string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--shutdown-grace="); ok {
			return v
		}
	}
	return "0s"
}

func maxLoad(ph []phase) int {
	m := 0
	for _, p := range ph {
		m = max(m, p.Load)
	}
	return m
}

func counts(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s: %.0f", k, v))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func policies(r Rules) string {
	var out []string
	for _, p := range r.Policies {
		out = append(out, fmt.Sprintf("%d %s per %s", p.Value, p.Type, p.Period))
	}
	return strings.Join(out, ", ") + ", select " + string(r.SelectPolicy)
}

func valuesNote(v []string) string {
	if len(v) == 0 {
		return ", default values"
	}
	return ", -f " + strings.Join(v, " -f ")
}

// flagsLine is the command's flags as given, less the paths of binaries
// and of the output folder, which are the machine's.
func (r *result) flagsLine() string {
	var out []string
	skip := false
	for _, a := range os.Args[1:] {
		if skip {
			skip = false
			continue
		}
		name, _, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "kiln" || name == "prometheus" || name == "out" || name == "keep" {
			skip = !hasVal && name != "keep"
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return ""
	}
	return " " + strings.Join(out, " ")
}
