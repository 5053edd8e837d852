package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/partition"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/quant"
	"github.com/kilnai/kiln/tensor"
)

// compile builds for a device that runs graphs itself (package device's
// Executor): the optimized FP32 graph is compiled for every profile (the
// device computes in the requested precision) through package partition,
// which gives the layers the device does not support to the CPU (each
// logged with its reason, and a summary; refused with StrictDevice); the
// first program is checked against the CPU's FP32 engine on the
// calibration or random batches (the accuracy report), and the device's
// compiled sections go into the plan (each segment's under its prefix when
// there are several). INT8 (deviceInt8) calibrates as the CPU path does and
// hands the device the input scale of each convolution the INT8 rule
// quantizes; the device keeps the rest in FP16. FP16 (deviceFP16) takes
// the CPU's decisions of which layers stay FP32 (quant.FP16Decide, with
// --layer-precision) and hands them to the device
// (device.ExecOptions.LayerPrecision).
func (b *builder) compile(ctx context.Context) error {
	if len(b.o.LayerPrecision) > 0 && b.o.Precision == FP32 {
		return fmt.Errorf("%w: --layer-precision on %s needs --fp16 or --int8", ErrOptions, b.o.Device)
	}
	h := &b.res.Header
	ref, err := cloneGraph(b.g)
	if err != nil {
		return err
	}
	refEngine, err := engine.New(ref)
	if err != nil {
		return err
	}
	var int8Scales map[string]float32
	if b.o.Precision == INT8 {
		if int8Scales, err = b.deviceInt8(ctx, refEngine); err != nil {
			return err
		}
	}
	var layerPrec map[string]string
	if b.o.Precision == FP16 {
		if layerPrec, err = b.deviceFP16(); err != nil {
			return err
		}
	}
	profiles := h.Profiles
	if len(profiles) == 0 {
		profiles = []engine.Profile{{}}
	}
	var first device.Program
	defer func() {
		if first != nil {
			first.Close()
		}
	}()
	blobs := map[string][]byte{}
	// The CPU segments of a partitioned graph are timed as a CPU build's
	// layers are (partition.Options.CPU), under the CPU's fingerprint.
	// --workspace bounds their tactics' scratch memory as on the CPU.
	po := partition.Options{Strict: b.o.StrictDevice, Workspace: b.o.Workspace}
	if b.o.Progress != nil {
		po.Progress = func(pr tactic.Progress) { b.o.Progress("tactics of the CPU layers " + pr.String()) }
	}
	if d, ord, err := devices.Or(b.o.Devices).Lookup(partition.CPU); err == nil {
		if fp, err := device.FingerprintAt(d, ord); err == nil {
			po.CPU = fp
		}
	}
	for i, p := range profiles {
		g, err := cloneGraph(b.g)
		if err != nil {
			return err
		}
		if _, err := ops.InferGraph(g); err != nil {
			return err
		}
		o := device.ExecOptions{Ordinal: b.ordinal, Precision: b.o.Precision, MemoryLimit: b.o.Workspace,
			Tune: !b.o.NoTiming, TimingCache: b.o.TimingCache, OptLevel: b.o.OptLevel, Int8Scales: int8Scales,
			LayerPrecision: layerPrec}
		if len(p.Inputs) > 0 {
			o.MaxShapes, o.OptShapes = p.Shapes(2), p.Shapes(1)
		}
		prog, rep, err := partition.Compile(g, b.exec, o, po)
		if i == 0 && rep != nil && (err == nil || !errors.Is(err, partition.ErrFallback)) {
			for _, line := range rep.Lines() {
				b.logf("%s", line)
			}
			b.logf("%s", rep.Summary())
		}
		if err != nil {
			return fmt.Errorf("profile %d: %w", i, err)
		}
		for _, f := range reportFallbacks(rep) {
			if b.fallback == nil {
				b.fallback = map[string]string{}
			}
			if _, seen := b.fallback[f.Node]; !seen {
				b.fallback[f.Node] = f.Reason.Error()
			}
		}
		// the CPU segments' choices, for the plan's header (finishHeader)
		cpuSegs := partition.CPUTactics(prog)
		segNames := make([]string, 0, len(cpuSegs))
		for seg := range cpuSegs {
			segNames = append(segNames, seg)
		}
		sort.Strings(segNames)
		for _, seg := range segNames {
			b.logf("%s", cpuTacticsLine(b.g, seg, profileName(p, i, len(profiles)), cpuSegs[seg]))
			b.noteCPUTactics(i, len(profiles), cpuSegs[seg])
		}
		if bp, ok := prog.(device.BlobProgram); ok {
			for name, data := range bp.Blobs() {
				// profile 0's sections, and a later profile's own where
				// they differ (tactics tuned at its shapes)
				if i == 0 {
					blobs[name] = data
				} else if !bytes.Equal(blobs[name], data) {
					blobs[plan.ProfileBlobPrefix(i)+name] = data
				}
			}
		}
		if i == 0 {
			first = prog
		} else {
			prog.Close()
		}
	}
	names := make([]string, 0, len(blobs))
	for name := range blobs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b.res.Blobs = append(b.res.Blobs, plan.Blob{Name: name, Data: blobs[name]})
	}
	b.logf("compiled for %s (%s) in %d profile(s); %d device sections", b.o.Device, b.o.Precision, len(profiles), len(names))
	batches, err := b.batches(modelInputs(b.g))
	if err != nil {
		if b.reportSkipped(err) {
			return nil
		}
		return err
	}
	acc, err := quant.Compare(ctx, tensorOutputs{refEngine}, tensorOutputs{first}, batches)
	if err != nil {
		if b.reportSkipped(err) {
			return nil
		}
		return fmt.Errorf("accuracy report: %w", err)
	}
	b.logf("accuracy of %s %s against the CPU's fp32 on %d batches:", b.o.Device, b.o.Precision, acc.Batches)
	for _, line := range strings.Split(strings.TrimSpace(acc.String()), "\n") {
		b.logf("  %s", line)
	}
	js, err := acc.JSON()
	if err != nil {
		return err
	}
	h.Accuracy = js
	return nil
}

// deviceInt8 calibrates the FP32 graph (the calibration cache, or
// --calib-data / random batches with --calib-method, as the CPU path does)
// and applies the INT8 rule (quant.Rule, with --layer-precision) to a copy
// of the graph: it returns, for each convolution the rule puts in INT8,
// the scale of its input (amax/127), by node name, and the scales of the
// values the CUDA executor keeps in 8 bits that no such convolution reads
// as its input (int8ValueScales, under int8ValueKey). Matrix products stay in
// float on a device (its INT8 layers are convolutions). The rule's
// decisions are logged as on the CPU.
func (b *builder) deviceInt8(ctx context.Context, ref *engine.Engine) (map[string]float32, error) {
	var batches []map[string]*tensor.Tensor
	if b.o.CalibData != "" || b.o.CalibBatches > 0 || b.o.CalibCache == "" {
		var err error
		if batches, err = b.batches(modelInputs(b.g)); err != nil {
			return nil, err
		}
	}
	table, err := b.calibrate(ctx, ref, batches)
	if err != nil {
		return nil, err
	}
	layers := map[string]quant.Precision{}
	products := map[string]bool{}
	for _, n := range b.g.Nodes {
		if isProduct(n) {
			layers[n.Name] = quant.PrecisionFP32
			products[n.Name] = true
		}
	}
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
	sensitive, err := b.int8Decisions(ctx, ref, table, batches, layers, FP16)
	if err != nil {
		return nil, err
	}
	g, err := cloneGraph(b.g)
	if err != nil {
		return nil, err
	}
	rep, err := quant.QuantizeINT8(g, table, quant.INT8Options{Layers: layers})
	if err != nil {
		return nil, err
	}
	b.recordInt8(rep, sensitive, b.o.Device, products)
	for _, line := range strings.Split(strings.TrimSpace(rep.String()), "\n") {
		b.logf("%s", line)
	}
	byName := map[string]*ir.Node{}
	for _, n := range b.g.Nodes {
		byName[n.Name] = n
	}
	scales := map[string]float32{}
	for _, d := range rep.Layers {
		n := byName[d.Name]
		if d.Precision != quant.PrecisionINT8 || n == nil || isProduct(n) || n.Input(0) == nil {
			continue
		}
		if s, ok := table.Scale(n.Input(0).Name); ok {
			scales[d.Name] = s
		}
	}
	convs := len(scales)
	values := int8ValueScales(b.g, scales, table)
	for k, s := range values {
		scales[k] = s
	}
	if len(values) > 0 {
		b.logf("INT8 on %s: %d convolutions get input scales, %d values their own (read as a residual or by a float layer); the device runs the rest in fp16",
			b.o.Device, convs, len(values))
	} else {
		b.logf("INT8 on %s: %d convolutions get input scales; the device runs the rest in fp16", b.o.Device, convs)
	}
	return scales, nil
}

// int8ValueKey is the key of a value's own scale in
// device.ExecOptions.Int8Scales ("value:NAME"; gpuexec.Int8ValueKey, which
// the CUDA executor reads), beside the convolutions' input scales (node
// names).
func int8ValueKey(name string) string { return "value:" + name }

// int8ValueScales returns the scales (under int8ValueKey) of the values the
// CUDA executor may keep in 8 bits that no quantized convolution reads as
// its input, so that convScales (node name: input scale) does not give
// them: the residual z and the output y of each quantized convolution that
// can run as expand_i8u2 (a kiln::FusedConv 1x1, stride 1, unpadded, one
// group, with a residual and ReLU; the executor checks the rest: shapes,
// layout, the GPU). In a ResNet these are the downsamples' outputs (read
// only as the residual of their stage's first block) and the last block's
// output (read by the pooling); a block's input and the other blocks'
// outputs are the next 1x1's input and have their scale already.
func int8ValueScales(g *ir.Graph, convScales map[string]float32, table *quant.Table) map[string]float32 {
	covered := map[*ir.Value]bool{} // read as the input of a quantized convolution
	for _, n := range g.Nodes {
		if _, ok := convScales[n.Name]; ok && n.Input(0) != nil {
			covered[n.Input(0)] = true
		}
	}
	out := map[string]float32{}
	for _, n := range g.Nodes {
		if _, ok := convScales[n.Name]; !ok || !expandCandidate(g, n) {
			continue
		}
		for _, v := range []*ir.Value{n.Input(3), n.Outputs[0]} {
			if covered[v] {
				continue
			}
			if s, ok := table.Scale(v.Name); ok {
				out[int8ValueKey(v.Name)] = s
			}
		}
	}
	return out
}

// expandCandidate reports whether n is a convolution the CUDA executor
// may run as expand_i8u2 as far as the graph says (op_conv1x1_i8x.go's
// i8xOK): kiln::FusedConv with a residual and ReLU, a 1x1 kernel, stride
// 1, no padding, one group.
func expandCandidate(g *ir.Graph, n *ir.Node) bool {
	if n.Domain != "kiln" || n.OpType != "FusedConv" || len(n.Outputs) == 0 || n.Outputs[0] == nil ||
		n.Input(3) == nil || n.Input(1) == nil {
		return false
	}
	if ep, err := ops.ParseEpilogueAttrs(n); err != nil || ep.Activation != "Relu" {
		return false
	}
	ca, err := ops.ParseConvAttrs(n, g.Opset())
	if err != nil || ca.Group != 1 {
		return false
	}
	for _, s := range ca.Strides {
		if s != 1 {
			return false
		}
	}
	for _, p := range ca.Pads {
		if p != 0 {
			return false
		}
	}
	w := n.Input(1)
	var dims []int
	if w.Const != nil {
		dims = w.Const.Shape
	}
	return len(dims) == 4 && dims[2] == 1 && dims[3] == 1
}

// isProduct reports whether n is a matrix product (MatMul, Gemm,
// kiln::FusedMatMul): on a device these stay in float.
func isProduct(n *ir.Node) bool {
	switch n.OpType {
	case "MatMul", "Gemm", "FusedMatMul":
		return true
	}
	return false
}

// noteCPUTactics keeps the tactics of profile i's CPU segment layers (of
// n profiles) for the plan's tactic table (layers adds them there, beside
// the device's), so that kiln inspect shows how a fallback layer runs.
func (b *builder) noteCPUTactics(i, n int, t map[string]partition.CPUTactic) {
	if b.cpuTactics == nil {
		b.cpuTactics = make([][]plan.Tactic, n)
	}
	layers := make([]string, 0, len(t))
	for layer := range t {
		layers = append(layers, layer)
	}
	sort.Strings(layers)
	for _, layer := range layers {
		c := t[layer]
		b.cpuTactics[i] = append(b.cpuTactics[i], plan.Tactic{Layer: layer, Tactic: c.Tactic, Time: time.Duration(c.NS), Cached: c.Cached})
	}
}

// cpuTacticsLine is the build log's line for the tactics of a CPU
// segment's layers (segment: "segment1") in one profile: "tactics of the
// CPU layers in segment1 (profile p): 1 timed, 0 from the timing cache;
// chosen: kiln::FusedConv winograd x1", the counts as a CPU build's
// tactic stage gives them (a second build with the timing cache times 0).
func cpuTacticsLine(g *ir.Graph, segment, profile string, t map[string]partition.CPUTactic) string {
	ops := map[string]string{}
	for _, n := range g.Nodes {
		op := n.OpType
		if n.Domain != "" {
			op = n.Domain + "::" + op
		}
		ops[n.Name] = op
	}
	timed, cached := 0, 0
	won := map[string]int{}
	for layer, c := range t {
		if c.Cached {
			cached++
		} else {
			timed++
		}
		won[ops[layer]+" "+c.Tactic]++
	}
	parts := make([]string, 0, len(won))
	for k, n := range won {
		parts = append(parts, fmt.Sprintf("%s x%d", k, n))
	}
	sort.Strings(parts)
	if profile != "" {
		segment += " (profile " + profile + ")"
	}
	return fmt.Sprintf("tactics of the CPU layers in %s: %d timed, %d from the timing cache; chosen: %s", segment, timed, cached, strings.Join(parts, ", "))
}

// profileName names profile p (the i-th of n) in the build log: "" when
// there is one profile, else its name or its number.
func profileName(p engine.Profile, i, n int) string {
	switch {
	case n <= 1:
		return ""
	case p.Name != "":
		return p.Name
	}
	return fmt.Sprint(i)
}

// reportFallbacks is the fallback list of a partition report (nil: none).
func reportFallbacks(r *partition.Report) []partition.Fallback {
	if r == nil {
		return nil
	}
	return r.Fallbacks
}
