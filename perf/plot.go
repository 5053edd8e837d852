package perf

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotFormat checks that path names a picture WritePlot can write (.svg or
// .png) and returns the format.
func PlotFormat(path string) (string, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".svg", ".png":
		return ext[1:], nil
	}
	return "", fmt.Errorf("%w: plot %q: want a .svg or .png file", ErrConfig, path)
}

// WritePlot draws the latency percentiles (p50, p90, p95, p99) of each step
// against its throughput, one line per percentile, into path (SVG or PNG
// by its extension).
func WritePlot(path string, r *Report) error {
	if _, err := PlotFormat(path); err != nil {
		return err
	}
	p := plot.New()
	what := fmt.Sprintf("%s over %s", r.Model, r.Protocol)
	if r.Binary {
		what += " (binary)"
	}
	if r.Streaming {
		what += " (stream)"
	}
	p.Title.Text = fmt.Sprintf("kiln perf: %s, %s %s", what, strings.ToLower(r.loadName()), loadRange(r))
	p.X.Label.Text = fmt.Sprintf("throughput (inferences/s); labels: %s", strings.ToLower(r.loadName()))
	p.Y.Label.Text = "latency (ms)"
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	series := []struct {
		name  string
		get   func(Latencies) time.Duration
		color color.RGBA
		shape draw.GlyphDrawer
	}{
		{"p50", func(l Latencies) time.Duration { return l.P50 }, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, draw.CircleGlyph{}},
		{"p90", func(l Latencies) time.Duration { return l.P90 }, color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 255}, draw.SquareGlyph{}},
		{"p95", func(l Latencies) time.Duration { return l.P95 }, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 255}, draw.TriangleGlyph{}},
		{"p99", func(l Latencies) time.Duration { return l.P99 }, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}, draw.CrossGlyph{}},
	}
	top := 0.0
	for _, s := range series {
		xy := make(plotter.XYs, 0, len(r.Steps))
		for _, st := range r.Steps {
			if st.Latency.Count == 0 {
				continue
			}
			xy = append(xy, plotter.XY{X: st.Throughput, Y: float64(s.get(st.Latency)) / 1e6})
			top = max(top, float64(s.get(st.Latency))/1e6)
		}
		if len(xy) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xy)
		if err != nil {
			return fmt.Errorf("perf: plot: %w", err)
		}
		line.Color, points.Color, points.Shape = s.color, s.color, s.shape
		line.Width = vg.Points(1.5)
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}
	// each step's load next to its p50 point
	var at plotter.XYLabels
	for _, st := range r.Steps {
		if st.Latency.Count > 0 {
			at.XYs = append(at.XYs, plotter.XY{X: st.Throughput, Y: float64(st.Latency.P50) / 1e6})
			at.Labels = append(at.Labels, st.load())
		}
	}
	if len(at.XYs) > 0 {
		labels, err := plotter.NewLabels(at)
		if err != nil {
			return fmt.Errorf("perf: plot: %w", err)
		}
		for i := range labels.TextStyle {
			labels.TextStyle[i].YAlign = -1.6 // below the point
			labels.TextStyle[i].XAlign = -0.5
		}
		p.Add(labels)
	}
	// room above the lines for the legend
	p.Y.Min, p.Y.Max = 0, top*1.35
	if len(at.XYs) > 0 {
		lo, hi := at.XYs[0].X, at.XYs[0].X
		for _, xy := range at.XYs {
			lo, hi = min(lo, xy.X), max(hi, xy.X)
		}
		pad := max((hi-lo)*0.06, hi*0.02)
		p.X.Min, p.X.Max = max(lo-pad, 0), hi+pad
	}
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("perf: plot: %w", err)
	}
	return nil
}

func loadRange(r *Report) string {
	if len(r.Steps) == 0 {
		return ""
	}
	first, last := r.Steps[0], r.Steps[len(r.Steps)-1]
	if len(r.Steps) == 1 {
		return first.load()
	}
	return first.load() + ".." + last.load()
}
