package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// loadForRun loads a plan as it is, or builds an ONNX model (or the
// bundled example) in memory with the build flags. Without --profile or
// --dim the engine takes any shape, and the reduced-precision stage
// (calibration, accuracy report) runs at the shapes of runAt: those kiln
// run will feed it.
func loadForRun(path string, bf *buildFlags, runAt *runShapes) (*kiln.Model, error) {
	if path != "example" && kiln.IsPlan(path) {
		return kiln.LoadWith(path, kiln.LoadOptions{Devices: deviceSet})
	}
	o, err := bf.options()
	if err != nil {
		return nil, err
	}
	if len(o.Profiles) == 0 && len(o.Dims) == 0 {
		o.AnyShape = true
		if runAt != nil {
			o.OptShapes = runAt.shapes
		}
	}
	ctx := context.Background()
	if path == "example" {
		return kiln.BuildBytes(ctx, "tinycnn", examples.TinyCNNModel, o)
	}
	return kiln.Build(ctx, path, o)
}

type runReport struct {
	Model      string         `json:"model"`
	Iterations int            `json:"iterations"`
	Latency    latency        `json:"latency"`
	Outputs    []outputReport `json:"outputs,omitempty"`
	Layers     []layerTime    `json:"layers,omitempty"`
	Segments   []segmentTime  `json:"segments,omitempty"`
}

// segmentTime is one segment of a plan partitioned between a device and
// the CPU, as --dump-profile reports it for device plans.
type segmentTime struct {
	Index   int     `json:"index"`
	Device  string  `json:"device"`
	Ops     string  `json:"ops"`
	MeanMS  float64 `json:"mean_ms"`
	Percent float64 `json:"percent"`
}

// segmentProfile accumulates the segment times of a device plan over runs
// (engine/partition's WithSegmentTimer): a device runs its segment as one
// captured graph, so the segment, not the layer, is what a run can time;
// the layers' tuned times are in kiln inspect.
type segmentProfile struct {
	total []time.Duration
	segs  []partition.SegmentTime
}

func (p *segmentProfile) run(ctx context.Context, m *kiln.Model, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	ctx = partition.WithSegmentTimer(ctx, func(st partition.SegmentTime) {
		for len(p.total) <= st.Index {
			p.total = append(p.total, 0)
			p.segs = append(p.segs, partition.SegmentTime{})
		}
		p.total[st.Index] += st.Took
		p.segs[st.Index] = st
	})
	return m.Run(ctx, inputs)
}

func (p *segmentProfile) print(w io.Writer, device string, runs int) []segmentTime {
	if len(p.total) == 0 {
		fmt.Fprintf(w, "\nthe plan runs entirely on %s as one segment: per-layer times of a device plan are the\n"+
			"builder's tuned times, shown by kiln inspect\n", device)
		return nil
	}
	var sum time.Duration
	for _, d := range p.total {
		sum += d
	}
	out := make([]segmentTime, len(p.total))
	fmt.Fprintf(w, "\nper-segment times (mean over %d runs; host copies between segments included):\n", runs)
	fmt.Fprintf(w, "  %-8s %-6s %-40s %10s %7s\n", "segment", "device", "layers", "ms", "%")
	for i, d := range p.total {
		st := segmentTime{Index: i, Device: p.segs[i].Device, Ops: p.segs[i].Ops, MeanMS: ms(d) / float64(runs)}
		if sum > 0 {
			st.Percent = 100 * float64(d) / float64(sum)
		}
		out[i] = st
		fmt.Fprintf(w, "  %-8d %-6s %-40s %10.3f %6.1f%%\n", i, st.Device, clip(st.Ops, 40), st.MeanMS, st.Percent)
	}
	return out
}

type outputReport struct {
	Name   string  `json:"name"`
	MaxAbs float64 `json:"max_abs_err"`
	MaxRel float64 `json:"max_rel_err"`
	Cosine float64 `json:"cosine"`
	OK     bool    `json:"ok"`
	Reason string  `json:"reason,omitempty"`
}

// latency holds milliseconds.
type latency struct {
	Min, Mean, P50, P90, P95, P99, Max float64
	// Throughput is inferences (runs) per second over the timed runs.
	Throughput float64 `json:"throughput_per_s"`
}

func latencyStats(lat []time.Duration) latency {
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, l := range s {
		sum += l
	}
	pct := func(p float64) float64 {
		i := int(p/100*float64(len(s))+0.5) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	l := latency{Min: ms(s[0]), Mean: ms(sum / time.Duration(len(s))), P50: pct(50), P90: pct(90), P95: pct(95), P99: pct(99), Max: ms(s[len(s)-1])}
	if sum > 0 {
		l.Throughput = float64(len(s)) / sum.Seconds()
	}
	return l
}

func printLatency(l latency) {
	fmt.Printf("throughput %.1f inferences/s\n", l.Throughput)
	fmt.Printf("latency ms: min %.3f  mean %.3f  p50 %.3f  p90 %.3f  p95 %.3f  p99 %.3f  max %.3f\n",
		l.Min, l.Mean, l.P50, l.P90, l.P95, l.P99, l.Max)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// layerProfile accumulates per-layer times over runs: the time from the end
// of the previous layer to the end of a layer is that layer's.
type layerProfile struct {
	total map[*ir.Node]time.Duration
	order []*ir.Node
}

type layerTime struct {
	Name    string  `json:"name"`
	Op      string  `json:"op"`
	MeanMS  float64 `json:"mean_ms"`
	Percent float64 `json:"percent"`
}

func newLayerProfile() *layerProfile { return &layerProfile{total: map[*ir.Node]time.Duration{}} }

func (p *layerProfile) run(ctx context.Context, m *kiln.Model, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	mark := time.Now()
	var last *ir.Node
	return m.RunObserved(ctx, inputs, func(v *ir.Value, _ *tensor.Tensor) {
		n := v.Producer
		if n == nil || n == last {
			return // a second output of the same node
		}
		now := time.Now()
		if _, seen := p.total[n]; !seen {
			p.order = append(p.order, n)
		}
		p.total[n] += now.Sub(mark)
		mark, last = now, n
	})
}

func (p *layerProfile) print(w io.Writer, runs int) []layerTime {
	var sum time.Duration
	for _, d := range p.total {
		sum += d
	}
	var out []layerTime
	for _, n := range p.order {
		d := p.total[n]
		op := n.OpType
		if n.Domain != "" {
			op = n.Domain + "::" + op
		}
		lt := layerTime{Name: n.Name, Op: op, MeanMS: ms(d) / float64(runs)}
		if sum > 0 {
			lt.Percent = 100 * float64(d) / float64(sum)
		}
		out = append(out, lt)
	}
	sorted := append([]layerTime(nil), out...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].MeanMS > sorted[j].MeanMS })
	fmt.Fprintf(w, "\nper-layer times (mean over %d runs, slowest first):\n", runs)
	fmt.Fprintf(w, "  %-32s %-24s %10s %7s\n", "layer", "op", "ms", "%")
	for _, l := range sorted {
		fmt.Fprintf(w, "  %-32s %-24s %10.3f %6.1f%%\n", clip(l.Name, 32), clip(l.Op, 24), l.MeanMS, l.Percent)
	}
	byOp := map[string]float64{}
	for _, l := range out {
		byOp[l.Op] += l.MeanMS
	}
	var ops []string
	for op := range byOp {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool { return byOp[ops[i]] > byOp[ops[j]] })
	var parts []string
	for _, op := range ops {
		parts = append(parts, fmt.Sprintf("%s %.3f", op, byOp[op]))
	}
	fmt.Fprintf(w, "  by op (ms): %s\n", strings.Join(parts, ", "))
	return out
}
