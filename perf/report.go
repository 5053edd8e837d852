package perf

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// us formats a duration in whole microseconds, as perf_analyzer's CSV does.
func us(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }

// us1 formats a duration in microseconds with one decimal.
func us1(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) }

func (r *Report) loadName() string {
	if r.Mode == "request_rate" {
		return "Request Rate"
	}
	return "Concurrency"
}

func (s *Step) load() string {
	if s.RequestRate > 0 {
		return strconv.FormatFloat(s.RequestRate, 'g', -1, 64)
	}
	return strconv.Itoa(s.Concurrency)
}

func (s *Step) errorCount() int64 {
	var n int64
	for _, v := range s.Errors {
		n += v
	}
	return n
}

// errorText is the errors by kind, "HTTP 429=3 timeout=1", or "0".
func (s *Step) errorText() string {
	if len(s.Errors) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(s.Errors))
	for k := range s.Errors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []string
	for _, k := range keys {
		b = append(b, fmt.Sprintf("%s=%d", k, s.Errors[k]))
	}
	return strings.Join(b, " ")
}

// network is the client's average latency less the server's time: the
// network and the server's sending and receiving.
func (s *Step) network() time.Duration {
	return max(s.Latency.Avg-s.Server.Total, 0)
}

// WriteTable writes the report as a text table, one row per step, latency
// in milliseconds and the server's time per request in microseconds.
func WriteTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tinfer/s\tp50 ms\tp90 ms\tp95 ms\tp99 ms\tavg ms\tserver infer/s\tqueue us\tinput us\tinfer us\toutput us\tstable\terrors\t\n", r.loadName())
	for _, s := range r.Steps {
		f := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.load(), s.Throughput,
			f(s.Latency.P50), f(s.Latency.P90), f(s.Latency.P95), f(s.Latency.P99), f(s.Latency.Avg),
			s.Server.Throughput, us1(s.Server.Queue), us1(s.Server.ComputeInput), us1(s.Server.ComputeInfer),
			us1(s.Server.ComputeOutput), map[bool]string{true: "yes", false: "no"}[s.Stable], s.errorText())
	}
	return tw.Flush()
}

// CSVHeader is the header row of WriteCSV in the concurrency mode (the
// request-rate mode's first column is "Request Rate"): perf_analyzer's
// columns that kiln measures, times in microseconds, then the errors and
// whether the step was stable.
var CSVHeader = []string{"Concurrency", "Inferences/Second", "Network+Server Send/Recv", "Server Queue",
	"Server Compute Input", "Server Compute Infer", "Server Compute Output", "p50 latency", "p90 latency",
	"p95 latency", "p99 latency", "Avg latency", "Server Inferences/Second", "Errors", "Stable"}

// WriteCSV writes the report as CSV, one row per step.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	h := slices.Clone(CSVHeader)
	h[0] = r.loadName()
	if err := cw.Write(h); err != nil {
		return err
	}
	for _, s := range r.Steps {
		row := []string{s.load(), strconv.FormatFloat(s.Throughput, 'f', 2, 64), us(s.network()),
			us(s.Server.Queue), us(s.Server.ComputeInput), us(s.Server.ComputeInfer), us(s.Server.ComputeOutput),
			us(s.Latency.P50), us(s.Latency.P90), us(s.Latency.P95), us(s.Latency.P99), us(s.Latency.Avg),
			strconv.FormatFloat(s.Server.Throughput, 'f', 2, 64), strconv.FormatInt(s.errorCount(), 10),
			strconv.FormatBool(s.Stable)}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the whole report as indented JSON (durations in
// nanoseconds).
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
