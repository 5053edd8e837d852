package build

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/quant"
	"github.com/kilnai/kiln/tensor"
)

// precision imports explicitly quantized layers (Q/DQ pairs), then
// converts the optimized FP32 graph to the requested precision and
// measures the result against FP32 (the accuracy report).
func (b *builder) precision(ctx context.Context) error {
	if hasQDQ(b.g) {
		rep, err := quant.ImportQDQ(b.g)
		if err != nil {
			return err
		}
		q, f := rep.Count()
		b.logf("explicit quantization: %d Q/DQ layers as INT8, %d left in float", q, f)
		for _, d := range rep.Layers {
			b.logf("  %s (%s): %s, %s", d.Name, d.Op, d.Precision, d.Reason)
		}
		if _, err := ops.InferGraph(b.g); err != nil {
			return err
		}
	}
	if b.o.Precision == FP32 {
		return nil
	}
	ref, err := cloneGraph(b.g)
	if err != nil {
		return err
	}
	refEngine, err := engine.New(ref)
	if err != nil {
		return err
	}
	inputs := modelInputs(b.g)
	batches, err := b.batches(inputs)
	if err != nil && (b.o.Precision != FP16 || !b.reportSkipped(err)) {
		return err
	}
	switch b.o.Precision {
	case FP16:
		rep, err := quant.FP16Convert(b.g, quant.FP16Options{KeepFP32: b.fp16Keep()})
		if err != nil {
			return err
		}
		b.recordFP16(rep, "")
		for _, line := range strings.Split(strings.TrimSpace(rep.String()), "\n") {
			b.logf("%s", line)
		}
	case INT8:
		table, err := b.calibrate(ctx, refEngine, batches)
		if err != nil {
			return err
		}
		layers := map[string]quant.Precision{}
		for layer, p := range b.o.LayerPrecision {
			switch p {
			case FP32, FP16:
				layers[layer] = quant.PrecisionFP32
			case INT8:
				layers[layer] = quant.PrecisionINT8
			}
		}
		for _, line := range strings.Split(strings.TrimSpace(quant.Rule), "\n") {
			b.logf("INT8 rule: %s", strings.TrimSpace(line))
		}
		sensitive, err := b.int8Decisions(ctx, refEngine, table, batches, layers, FP32)
		if err != nil {
			return err
		}
		rep, err := quant.QuantizeINT8(b.g, table, quant.INT8Options{Layers: layers})
		if err != nil {
			return err
		}
		b.recordInt8(rep, sensitive, "", nil)
		for _, line := range strings.Split(strings.TrimSpace(rep.String()), "\n") {
			b.logf("%s", line)
		}
	}
	if _, err := ops.InferGraph(b.g); err != nil {
		return err
	}
	test, err := cloneGraph(b.g)
	if err != nil {
		return err
	}
	testEngine, err := engine.New(test)
	if err != nil {
		return err
	}
	if batches == nil {
		return nil // the report was skipped, and reportSkipped said why
	}
	acc, err := quant.Compare(ctx, tensorOutputs{refEngine}, tensorOutputs{testEngine}, batches)
	if err != nil {
		if b.reportSkipped(err) {
			return nil
		}
		return fmt.Errorf("accuracy report: %w", err)
	}
	b.logf("accuracy of %s against fp32 on %d batches:", b.o.Precision, acc.Batches)
	for _, line := range strings.Split(strings.TrimSpace(acc.String()), "\n") {
		b.logf("  %s", line)
	}
	js, err := acc.JSON()
	if err != nil {
		return err
	}
	b.res.Header.Accuracy = js
	return nil
}

// reportSkipped reports whether err, met while making or running the
// accuracy report's batches, only means that the random inputs the report
// uses (no CalibData) do not fit the model: random data of a type it
// cannot make (strings), or inputs the FP32 reference itself refuses
// (indices or axes out of range). Then it logs that the report is skipped
// and why, and the build goes on: the report measures precision, and
// random inputs are not the model's. With CalibData the error stands.
func (b *builder) reportSkipped(err error) bool {
	if b.o.CalibData != "" || !errors.Is(err, quant.ErrNotMeasurable) {
		return false
	}
	b.logf("accuracy report skipped: %v (it runs random inputs, which do not fit this model; --calib-data DIR gives real ones)", err)
	return true
}

// tensorOutputs runs a model for the accuracy report (quant.Compare, which
// compares tensors) and hands back its outputs as tensors: a sequence
// output "s" becomes one output per element, "s[0]", "s[1]", ... (an
// element of a nested sequence "s[0][1]"), an optional output the value it
// holds, or nothing when it is empty. A sequence of another length, or an
// optional empty on one side only, then shows as outputs one model lacks,
// which Compare reports.
type tensorOutputs struct{ quant.Runner }

func (r tensorOutputs) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	out, err := r.Runner.Run(ctx, inputs)
	if err != nil {
		return nil, err
	}
	flat := make(map[string]*tensor.Tensor, len(out))
	var put func(name string, t *tensor.Tensor)
	put = func(name string, t *tensor.Tensor) {
		switch {
		case t.IsNone():
		case t.IsSequence():
			for i, e := range t.Elems {
				put(fmt.Sprintf("%s[%d]", name, i), e)
			}
		default:
			flat[name] = t
		}
	}
	for name, t := range out {
		put(name, t)
	}
	return flat, nil
}

func hasQDQ(g *ir.Graph) bool {
	for _, n := range g.Nodes {
		if (n.Domain == "" || n.Domain == "ai.onnx") && n.OpType == "DequantizeLinear" {
			return true
		}
	}
	return false
}

func modelInputs(g *ir.Graph) []*ir.Value {
	var in []*ir.Value
	for _, v := range g.Inputs {
		if v.Const == nil {
			in = append(in, v)
		}
	}
	return in
}

// batches returns the calibration (and accuracy) batches: the sets of
// CalibData, or CalibBatches random batches (at least 2) at the opt shapes
// of each profile (2 profiles: twice as many batches). Without a profile
// (AnyShape, or a static model) they run at Options.OptShapes, else at
// the opt shapes of the profile a build would derive: never at the
// minimum, whose 1x1 images break the pooling of detection models.
func (b *builder) batches(inputs []*ir.Value) ([]map[string]*tensor.Tensor, error) {
	if b.o.CalibData != "" {
		bs, err := quant.LoadBatches(b.o.CalibData, inputs)
		if err != nil {
			return nil, err
		}
		b.logf("calibration data: %d batches from %s", len(bs), b.o.CalibData)
		return bs, nil
	}
	n := b.o.CalibBatches
	if n < 2 {
		n = 2
	}
	var sets []map[string][]int
	for _, p := range b.res.Header.Profiles {
		sets = append(sets, p.Shapes(1))
	}
	if len(sets) == 0 {
		shapes, err := DefaultShapes(b.g, b.o.Dims)
		if err != nil {
			return nil, err
		}
		for name, s := range b.o.OptShapes {
			shapes[name] = s
		}
		sets = append(sets, shapes)
	}
	for _, shapes := range sets {
		for _, v := range inputs {
			if !v.Type.IsTensor() {
				// a profile's (or DefaultShapes') entry for a sequence or
				// optional input is no shape of its elements
				delete(shapes, v.Name)
			}
		}
	}
	var bs []map[string]*tensor.Tensor
	for i, shapes := range sets {
		more, err := quant.RandomBatches(inputs, shapes, n, int64(1+i))
		if err != nil {
			return nil, err
		}
		bs = append(bs, more...)
	}
	var at []string
	for _, v := range inputs {
		if s := bs[0][v.Name]; s != nil && v.Type.IsTensor() && !v.Type.Shape.FullyKnown() {
			at = append(at, v.Name+" "+tensor.ShapeString(s.Shape))
		}
	}
	where := ""
	if len(at) > 0 {
		where = " at " + strings.Join(at, ", ")
		if len(sets) > 1 {
			where += " (the first profile's opt shapes; each profile's for the others)"
		}
	}
	b.logf("generated %d random batches%s (random data exercises every layer, but calibrate on real samples with --calib-data where you can)", len(bs), where)
	return bs, nil
}

// calibrate reads the calibration cache when there is one and no data, or
// calibrates (and writes the cache when one is named).
func (b *builder) calibrate(ctx context.Context, ref *engine.Engine, batches []map[string]*tensor.Tensor) (*quant.Table, error) {
	if b.o.CalibCache != "" && b.o.CalibData == "" && b.o.CalibBatches == 0 {
		t, err := quant.ReadTable(b.o.CalibCache)
		if err != nil {
			return nil, err
		}
		b.logf("calibration: %d ranges read from %s (%s)", len(t.Entries), b.o.CalibCache, t.Method)
		return t, nil
	}
	method := quant.Entropy
	if b.o.CalibMethod != "" {
		m, err := quant.ParseMethod(b.o.CalibMethod)
		if err != nil {
			return nil, err
		}
		method = m
	}
	t, err := quant.Calibrate(ctx, ref, batches, method, quant.CalibOptions{Profiles: b.res.Header.Profiles, Progress: func(done, total int) {
		if b.o.Progress != nil {
			b.o.Progress(fmt.Sprintf("calibration: run %d of %d", done, total))
		}
	}})
	if err != nil {
		return nil, err
	}
	b.logf("calibration (%s): %d ranges from %d batches%s", method, len(t.Entries), len(batches), t.Note())
	if b.o.CalibCache != "" {
		if err := quant.WriteTable(b.o.CalibCache, t); err != nil {
			return nil, err
		}
		b.logf("calibration cache written to %s", b.o.CalibCache)
	}
	return t, nil
}

// cloneGraph returns a copy of g for engines that must not share g's
// values: ir's structural clone (weights shared, subgraphs copied).
func cloneGraph(g *ir.Graph) (*ir.Graph, error) {
	return g.Clone(), nil
}

// tactics times each layer's implementations at every profile's opt shape
// (or the model's static shapes), through the timing cache.
func (b *builder) tactics(ctx context.Context) error {
	h := &b.res.Header
	if b.o.NoTiming {
		b.logf("tactics: not timed (default implementations)")
		return nil
	}
	var cache *tactic.Cache
	if b.o.TimingCache != "" {
		c, err := tactic.Open(b.o.TimingCache)
		if err != nil {
			return err
		}
		cache = c
	}
	profiles := h.Profiles
	if len(profiles) == 0 {
		profiles = []engine.Profile{{Name: "static shapes"}}
	}
	h.Tactics = nil
	for _, p := range profiles {
		g, err := cloneGraph(b.g)
		if err != nil {
			return err
		}
		opt := p.Shapes(1)
		for _, v := range g.Inputs {
			s, ok := opt[v.Name]
			if !ok {
				continue
			}
			shape := make(ir.Shape, len(s))
			for i, d := range s {
				shape[i] = ir.D(int64(d))
			}
			v.Type.Shape = shape
		}
		choices, err := tactic.Select(ctx, g, b.fp, cache, tactic.Options{Workspace: b.o.Workspace, Progress: func(pr tactic.Progress) {
			if b.o.Progress != nil {
				b.o.Progress("tactics " + pr.String())
			}
		}})
		if err != nil {
			return err
		}
		var set []plan.Tactic
		measured, cached, cold := 0, 0, 0
		won := map[string]int{}
		for _, n := range b.g.Nodes {
			c, ok := choices[n.Name]
			if !ok {
				continue
			}
			set = append(set, plan.Tactic{Layer: n.Name, Tactic: c.Tactic, Time: c.Time, Cached: c.Cached})
			if c.Cached {
				cached++
			} else {
				measured++
			}
			if c.Cold {
				cold++
			}
			won[n.OpType+" "+c.Tactic]++
		}
		h.Tactics = append(h.Tactics, set)
		var parts []string
		for k, n := range won {
			parts = append(parts, fmt.Sprintf("%s x%d", k, n))
		}
		sort.Strings(parts)
		b.logf("tactics (profile %s, at its opt shapes): %d layers timed (%d with their weights cold), %d from the timing cache; chosen: %s", p.Name, measured, cold, cached, strings.Join(parts, ", "))
		if b.o.Workspace > 0 {
			var most int64
			for _, c := range choices {
				most = max(most, c.Scratch[c.Tactic])
			}
			b.logf("workspace: the chosen tactics take at most %d bytes of scratch memory (limit %d)", most, b.o.Workspace)
		}
	}
	if cache != nil {
		if err := cache.Save(); err != nil {
			return err
		}
	}
	return nil
}

// memory plans the activation arena at every profile's max shape, with an
// engine prepared as the runtime will prepare it, and records the largest.
func (b *builder) memory() error {
	h := &b.res.Header
	profiles := h.Profiles
	if len(profiles) == 0 {
		profiles = []engine.Profile{{}}
	}
	for i, p := range profiles {
		// this stage only plans: the memory limit applies where the plan
		// is loaded (kiln.LoadOptions.MemoryLimit), which may allow more
		o := engine.Options{MemoryLimit: -1}
		if len(p.Inputs) > 0 {
			o.Profiles = []engine.Profile{p}
		}
		e, err := engine.NewWithOptions(b.g, o)
		if err != nil {
			return err
		}
		if b.kernels == nil {
			b.kernels = e.Kernels()
		}
		m := e.Memory()
		if int64(m.ArenaBytes) > h.Stats.ArenaBytes {
			h.Stats.ArenaBytes, h.Stats.IntermediateBytes = int64(m.ArenaBytes), int64(m.IntermediateBytes)
		}
		name := p.Name
		if name == "" {
			name = "static shapes"
		}
		if m.ArenaBytes > 0 {
			b.logf("memory (%s, profile %d): arena %d bytes for %d of %d intermediates totalling %d bytes, %d written in place over a residual",
				name, i, m.ArenaBytes, m.InArena, m.Values, m.IntermediateBytes, m.InPlace)
		} else {
			b.logf("memory (%s): no arena (intermediate sizes unknown without a profile)", name)
		}
	}
	return nil
}
