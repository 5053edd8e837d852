package build

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/quant"
	"github.com/kilnai/kiln/tensor"
)

// DefaultSensitivityBatches is the number of calibration batches the
// sensitivity analysis runs when Options.SensitivityBatches is 0.
const DefaultSensitivityBatches = 4

// sensitivityShown is how many of the most sensitive layers the build log
// lists (besides every layer kept in float).
const sensitivityShown = 10

// checkSensitivity checks Int8MinCosine and SensitivityBatches.
func (o *Options) checkSensitivity() error {
	c := o.Int8MinCosine
	if c == 0 && o.SensitivityBatches == 0 {
		return nil
	}
	if c == 0 {
		return fmt.Errorf("%w: --int8-sensitivity-batches needs --int8-min-cosine", ErrOptions)
	}
	if o.Precision != INT8 {
		return fmt.Errorf("%w: --int8-min-cosine needs --int8", ErrOptions)
	}
	if math.IsNaN(c) || c <= 0 || c > 1 {
		return fmt.Errorf("%w: --int8-min-cosine %g: want a cosine similarity above 0 and at most 1, such as 0.999", ErrOptions, c)
	}
	if o.SensitivityBatches < 0 {
		return fmt.Errorf("%w: --int8-sensitivity-batches %d: want at least 1", ErrOptions, o.SensitivityBatches)
	}
	return nil
}

// int8Decisions runs, when Options.Int8MinCosine asks for it, the
// sensitivity analysis on a copy of the graph with the INT8 overrides the
// build will give QuantizeINT8 (layers, which it extends with the layers
// kept in float), and returns the reason of each layer it keeps. float
// names the precision a kept layer computes in (fp32 on the CPU, fp16 on a
// device). The table of the most sensitive layers and the decisions go to
// the build log, and the analysis's time to the build's stages.
func (b *builder) int8Decisions(ctx context.Context, ref *engine.Engine, table *quant.Table, batches []map[string]*tensor.Tensor, layers map[string]quant.Precision, float string) (map[string]string, error) {
	minCos := b.o.Int8MinCosine
	if minCos == 0 {
		return nil, nil
	}
	if len(batches) == 0 {
		var err error
		if batches, err = b.batches(modelInputs(b.g)); err != nil {
			return nil, fmt.Errorf("sensitivity analysis: %w", err)
		}
	}
	n := b.o.SensitivityBatches
	if n == 0 {
		n = DefaultSensitivityBatches
	}
	total := len(batches)
	batches = batches[:min(n, total)]
	g, err := cloneGraph(b.g)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rep, err := quant.SensitivityWith(ctx, g, table, batches, quant.INT8Options{Layers: layers}, quant.SensitivityOptions{Ref: ref, Progress: func(done, all int) {
		if b.o.Progress != nil {
			b.o.Progress(fmt.Sprintf("sensitivity analysis: layer %d of %d", done, all))
		}
	}})
	if err != nil {
		return nil, fmt.Errorf("sensitivity analysis: %w", err)
	}
	took := time.Since(start)
	b.res.Timings = append(b.res.Timings, Stage{b.stageName + ": sensitivity", took})
	on := ""
	if b.exec != nil {
		on = " (measured with the CPU's int8 layers, which take the scales the device gets)"
	}
	b.logf("INT8 sensitivity analysis: %d layers, each alone in int8 against fp32 on %d of %d calibration batches%s, in %.2f s; a layer below cosine %g stays in %s",
		len(rep.Layers), len(batches), total, on, took.Seconds(), minCos, float)
	reasons := map[string]string{}
	kept := 0
	w := 5
	for _, l := range rep.Layers {
		w = max(w, len(l.Name))
	}
	b.logf("  %-*s  %-11s  %-8s  %s", w, "layer", "op", "cosine", "decision")
	shown := 0
	for _, l := range rep.Layers {
		decision := "int8"
		if l.Cosine < minCos || math.IsNaN(l.Cosine) {
			if _, user := b.o.LayerPrecision[l.Name]; user {
				decision = "int8 (--layer-precision wins)"
			} else {
				layers[l.Name] = quant.PrecisionFP32
				reasons[l.Name] = fmt.Sprintf("sensitivity: cosine %.6f alone in int8, below %g: %s", l.Cosine, minCos, float)
				decision = "kept in " + float
				kept++
			}
		} else if shown >= sensitivityShown {
			continue
		}
		shown++
		b.logf("  %-*s  %-11s  %.6f  %s", w, l.Name, l.Op, l.Cosine, decision)
	}
	if rest := len(rep.Layers) - shown; rest > 0 {
		b.logf("  (%d more layers, cosine at least %.6f: int8)", rest, rep.Layers[shown].Cosine)
	}
	b.logf("INT8 sensitivity analysis: %d of %d layers kept in %s", kept, len(rep.Layers), float)
	return reasons, nil
}

// recordInt8 keeps, for kiln inspect, the reason of every layer of rep
// (the sensitivity analysis's where it kept the layer), and puts those in
// rep for the build log. device, in builds for a device that runs graphs
// itself, names it: its float layers compute in fp16, and products
// (products names them) stay in float there unless --layer-precision says
// otherwise.
func (b *builder) recordInt8(rep *quant.INT8Report, sensitive map[string]string, device string, products map[string]bool) {
	if b.reasons == nil {
		b.reasons, b.ruleInt8 = map[string]string{}, map[string]bool{}
	}
	for i, d := range rep.Layers {
		b.ruleInt8[d.Name] = d.Precision == quant.PrecisionINT8
		_, user := b.o.LayerPrecision[d.Name]
		switch why, ok := sensitive[d.Name]; {
		case ok:
			rep.Layers[i].Reason = why
		case device == "" || d.Precision == quant.PrecisionINT8:
		case products[d.Name] && !user:
			rep.Layers[i].Reason = "matrix product: fp16 on " + device
		default:
			rep.Layers[i].Reason += ": fp16 on " + device
		}
		b.reasons[d.Name] = rep.Layers[i].Reason
	}
}
