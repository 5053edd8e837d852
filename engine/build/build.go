package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/device/devices"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/plan"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// ErrOptions is returned for wrong or contradictory build options.
var ErrOptions = errors.New("build: bad options")

// Precision names.
const (
	FP32 = "fp32"
	FP16 = "fp16"
	INT8 = "int8"
)

// Options configure a build. The zero value builds an FP32 CPU plan at
// optimization level 2 with default profiles.
type Options struct {
	// Device is "cpu" (default) or "cuda[:N]": a device of Devices.
	Device string
	// Devices are the devices the build may use, where Device is looked
	// up; empty: kiln's (devices.All, the GPU executor included). A
	// program or a test with a device of its own lists it here.
	Devices device.Set
	// Precision is FP32 (default), FP16 or INT8.
	Precision string
	// OptLevel is the optimizer level 1..5 (see optimize.Passes); 0 means
	// the default, 2. NoOptimization runs no pass (kiln build --opt-level 0).
	OptLevel       int
	NoOptimization bool
	// Profiles are the optimization profiles. Empty: one profile derived
	// from the model, MaxBatch and Dims (printed in the log).
	Profiles []engine.Profile
	// MaxBatch bounds a symbolic first dimension in the default profile
	// (default 32).
	MaxBatch int
	// Dims gives the [min, opt, max] of named symbolic dimensions for the
	// default profile, e.g. "seq": {1, 128, 512}.
	Dims map[string][3]int
	// AnyShape builds without a default profile: the engine accepts any
	// shape the model allows (kiln run and kiln serve on an ONNX file).
	AnyShape bool
	// OptShapes, with AnyShape (no profile to take opt shapes from), are
	// the input shapes, by input name, at which the precision stage's
	// random batches (calibration and the accuracy report) run: the
	// shapes the engine will mostly see (kiln run passes the shapes of
	// its --data or --shape). Inputs it does not name take the opt shape
	// of the profile that would be derived (DefaultShapes).
	OptShapes map[string][]int

	// Calibration (INT8): CalibData is a folder of input sets
	// (test_data_set_*/input_N.pb); CalibBatches, when > 0 and there is
	// no CalibData, is the number of generated random batches, at each
	// profile's opt shapes (N per profile). CalibMethod
	// is entropy (default), minmax or percentile. CalibCache is read
	// instead of calibrating when it exists and there is no data, and
	// written after calibration otherwise.
	CalibData    string
	CalibBatches int
	CalibMethod  string
	CalibCache   string
	// LayerPrecision overrides the precision of named layers ("fp32",
	// "fp16", "int8").
	LayerPrecision map[string]string
	// Int8MinCosine, when above 0 (INT8 only; at most 1), runs the
	// sensitivity analysis after calibration (quant.SensitivityWith):
	// every layer the INT8 rule quantizes is measured alone in INT8
	// against FP32 on the calibration batches, and each whose cosine
	// similarity falls below Int8MinCosine stays in float: FP32 on the
	// CPU, FP16 on a device that runs graphs itself. LayerPrecision wins
	// over it. The build log shows the most sensitive layers and the
	// decisions; the plan's layers keep them (plan.Layer.Reason).
	Int8MinCosine float64
	// SensitivityBatches caps the calibration batches the sensitivity
	// analysis runs (0: DefaultSensitivityBatches): it runs them once per
	// INT8 layer.
	SensitivityBatches int

	// TimingCache is the tactic timing cache file ("" = none). NoTiming
	// skips tactic timing (default tactics).
	TimingCache string
	NoTiming    bool
	// Workspace bounds memory (0 = no limit): on the CPU the scratch
	// memory a layer's tactic may take at the opt shape (measured while
	// timing: tactics above it are not chosen), on devices that run graphs
	// themselves (cuda) the device memory of the engine (weights,
	// activations, library workspaces) and, for the layers such a build
	// leaves to the CPU, their tactics' scratch as on the CPU.
	Workspace int64

	// StrictDevice refuses to build when a layer would run on the CPU
	// because the device (cuda) has no implementation of it, naming the
	// layers; by default such layers fall back to the CPU (see package
	// partition) and the build log lists them.
	StrictDevice bool

	// Log receives one line per builder step; Progress, when set,
	// receives frequent updates (calibration batches, tactic timings)
	// meant for one overwritten terminal line.
	Log      func(msg string)
	Progress func(msg string)
}

// Result is a built engine, ready to be written as a plan or run.
type Result struct {
	Header plan.Header
	Graph  *ir.Graph
	Blobs  []plan.Blob
	// Timings are the builder's stages and how long each took, each
	// followed by the steps within it that are timed on their own
	// (named "STAGE: STEP", such as "precision: sensitivity").
	Timings []Stage
	file    *onnx.File
}

// Stage is one step of a build and its duration.
type Stage struct {
	Name string
	Time time.Duration
}

// Close releases the model file the result's weights may point into.
func (r *Result) Close() error {
	if r.file == nil {
		return nil
	}
	err := r.file.Close()
	r.file = nil
	return err
}

// WriteFile writes the result as a plan file.
func (r *Result) WriteFile(path string) error {
	return plan.WriteFile(path, r.Header, r.Graph, r.Blobs)
}

// Write writes the result as a plan.
func (r *Result) Write(w io.Writer) error {
	return plan.Write(w, r.Header, r.Graph, r.Blobs)
}

// builder carries one build's state.
type builder struct {
	o       Options
	exec    device.Executor // set when the device runs graphs itself
	ordinal int
	res     *Result
	g       *ir.Graph
	fp      device.Fingerprint
	notes   []string
	fused   map[string][]string // node name -> what it absorbed
	// kernels gives, in CPU builds, the CPU kernel of each layer
	// (engine.Engine.Kernels of the memory stage's engine).
	kernels map[string]string
	// reasons gives, in INT8 builds, why each layer the INT8 rule
	// considered computes in its precision (node name -> reason)
	reasons map[string]string
	// ruleInt8 names the layers an INT8 build quantizes (on a device that
	// runs graphs itself, those given an input scale)
	ruleInt8 map[string]bool
	// fallback gives, in builds for a device that runs graphs itself, the
	// layers partitioning left to the CPU and why (node name -> reason)
	fallback map[string]string
	// cpuTactics are, per profile, the tactics timed for the layers of
	// the CPU segments of a device build (see noteCPUTactics)
	cpuTactics [][]plan.Tactic
	started    time.Time
	// stageName is the stage running (for steps timed within it)
	stageName string
}

func (b *builder) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.notes = append(b.notes, msg)
	if b.o.Log != nil {
		b.o.Log(msg)
	}
}

func (b *builder) stage(name string, f func() error) error {
	t := time.Now()
	at := len(b.res.Timings)
	b.stageName = name
	err := f()
	b.stageName = ""
	// the stage before the steps f timed within it
	b.res.Timings = slices.Insert(b.res.Timings, at, Stage{name, time.Since(t)})
	if err != nil {
		return fmt.Errorf("build: %s: %w", name, err)
	}
	return nil
}

// Build turns the ONNX model at path into an engine for o.Device. The
// result's weights may point into the model file: Close it when done.
func Build(ctx context.Context, path string, o Options) (*Result, error) {
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if name == "model" {
		name = filepath.Base(filepath.Dir(path))
	}
	return build(ctx, name, func() (*onnx.File, error) { return onnx.Load(path) }, o)
}

// BuildBytes is Build for a model in memory (without external data files).
func BuildBytes(ctx context.Context, name string, model []byte, o Options) (*Result, error) {
	return build(ctx, name, func() (*onnx.File, error) { return onnx.LoadBytes(model, "") }, o)
}

func build(ctx context.Context, name string, load func() (*onnx.File, error), o Options) (*Result, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	d, ord, err := devices.Or(o.Devices).Lookup(o.Device)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	fp, err := device.FingerprintAt(d, ord)
	if err != nil {
		return nil, fmt.Errorf("build: device %s: %w", o.Device, err)
	}
	b := &builder{o: o, res: &Result{}, fp: fp, fused: map[string][]string{}, started: time.Now()}
	b.exec, _ = d.(device.Executor)
	b.ordinal = ord
	ok := false
	defer func() {
		if !ok {
			b.res.Close()
		}
	}()
	var sum string
	if err := b.stage("load", func() error {
		f, err := load()
		if err != nil {
			return err
		}
		b.res.file = f
		h := sha256.Sum256(f.Bytes())
		sum = hex.EncodeToString(h[:])
		g, err := onnx.ToGraph(f.Model, f)
		if err != nil {
			return err
		}
		b.g = g
		return nil
	}); err != nil {
		return nil, err
	}
	h := &b.res.Header
	h.Device, h.Fingerprint, h.Precision, h.OptLevel = o.Device, fp, o.Precision, o.OptLevel
	h.Model = plan.ModelInfo{Name: name, SHA256: sum, Nodes: countNodes(b.g)}
	b.logf("model %s: %d nodes, %d inputs, %d outputs", name, h.Model.Nodes, len(b.g.Inputs), len(b.g.Outputs))

	if err := b.stage("profiles", b.profiles); err != nil {
		return nil, err
	}
	if err := b.stage("optimize", b.optimize); err != nil {
		return nil, err
	}
	if b.exec != nil {
		// The device runs the graph itself: it compiles it (kernels for
		// its compute capability, stored in the plan) and is checked
		// against the CPU's FP32 result.
		if err := b.stage("compile", func() error { return b.compile(ctx) }); err != nil {
			return nil, err
		}
	} else {
		if err := b.stage("precision", func() error { return b.precision(ctx) }); err != nil {
			return nil, err
		}
		if err := b.stage("tactics", func() error { return b.tactics(ctx) }); err != nil {
			return nil, err
		}
		if err := b.stage("memory", b.memory); err != nil {
			return nil, err
		}
	}
	b.layers()
	h.Created = time.Now().UTC().Truncate(time.Second)
	h.Notes = b.notes
	b.res.Graph = b.g
	ok = true
	return b.res, nil
}

func (o *Options) normalize() error {
	if o.Device == "" {
		o.Device = "cpu"
	}
	switch o.Precision {
	case "":
		o.Precision = FP32
	case FP32, FP16, INT8:
	default:
		return fmt.Errorf("%w: precision %q (want fp32, fp16 or int8)", ErrOptions, o.Precision)
	}
	if o.OptLevel == 0 {
		o.OptLevel = 2
	}
	if o.NoOptimization {
		o.OptLevel = 0
	}
	if o.OptLevel < 0 || o.OptLevel > 5 {
		return fmt.Errorf("%w: optimization level %d (want 0..5)", ErrOptions, o.OptLevel)
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 32
	}
	if o.MaxBatch < 1 {
		return fmt.Errorf("%w: max batch %d (want >= 1)", ErrOptions, o.MaxBatch)
	}
	for name, r := range o.Dims {
		if !(1 <= r[0] && r[0] <= r[1] && r[1] <= r[2]) {
			return fmt.Errorf("%w: dimension %s: need 1 <= min <= opt <= max, got %d,%d,%d", ErrOptions, name, r[0], r[1], r[2])
		}
	}
	if o.Precision == FP32 && o.Device == "cpu" && (o.CalibData != "" || o.CalibBatches != 0) {
		return fmt.Errorf("%w: calibration data is for --int8 (and the accuracy report of --fp16 or of a build for a GPU)", ErrOptions)
	}
	if o.Precision != INT8 && (o.CalibCache != "" || o.CalibMethod != "") {
		return fmt.Errorf("%w: calibration options need --int8", ErrOptions)
	}
	if o.Precision == INT8 && o.CalibData == "" && o.CalibBatches == 0 && o.CalibCache == "" {
		return fmt.Errorf("%w: --int8 needs calibration data (--calib-data DIR, --calib-random N) or a calibration cache (--calib-cache FILE)", ErrOptions)
	}
	switch o.CalibMethod {
	case "", "entropy", "minmax", "percentile":
	default:
		return fmt.Errorf("%w: calibration method %q (want entropy, minmax or percentile)", ErrOptions, o.CalibMethod)
	}
	if err := o.checkSensitivity(); err != nil {
		return err
	}
	for layer, p := range o.LayerPrecision {
		switch p {
		case FP32, FP16, INT8:
		default:
			return fmt.Errorf("%w: layer %s: precision %q (want fp32, fp16 or int8)", ErrOptions, layer, p)
		}
	}
	if o.Workspace > 0 && o.NoTiming {
		return fmt.Errorf("%w: --workspace bounds the tactics chosen by timing: it needs tactic timing (drop --no-timing)", ErrOptions)
	}
	if o.Workspace < 0 {
		return fmt.Errorf("%w: negative workspace", ErrOptions)
	}
	return nil
}

func countNodes(g *ir.Graph) int {
	n := 0
	g.Walk(func(*ir.Graph, *ir.Node) { n++ })
	return n
}

// profiles checks the given profiles against the model, or derives one.
func (b *builder) profiles() error {
	var inputs []*ir.Value
	for _, v := range b.g.Inputs {
		if v.Const == nil {
			inputs = append(inputs, v)
		}
	}
	ps := b.o.Profiles
	if len(ps) == 0 && !b.o.AnyShape {
		p, derived, err := defaultProfile(inputs, b.o.MaxBatch, b.o.Dims)
		if err != nil {
			return err
		}
		if derived {
			b.logf("default profile (set with --profile or --dim): %s", p.String())
			ps = []engine.Profile{p}
		}
	}
	for i := range ps {
		if ps[i].Name == "" {
			ps[i].Name = fmt.Sprintf("profile%d", i)
		}
		if err := ps[i].Validate(inputs); err != nil {
			return err
		}
	}
	b.res.Header.Profiles = ps
	return nil
}

// DefaultShapes returns the opt shape of every input of g (constant ones
// excepted) in the profile a build derives when it is given none: a
// symbolic first dimension 1, a named dimension the opt of dims[name],
// any other 128 (see Options.Dims). The shapes are those kiln run gives
// random inputs and those the precision stage of an AnyShape build runs
// its batches at.
func DefaultShapes(g *ir.Graph, dims map[string][3]int) (map[string][]int, error) {
	inputs := modelInputs(g)
	p, _, err := defaultProfile(inputs, 1, dims)
	if err != nil {
		return nil, err
	}
	out := p.Shapes(1)
	for _, v := range inputs {
		if _, ok := out[v.Name]; !ok {
			out[v.Name], _ = v.Type.Shape.Ints() // fully static
		}
	}
	return out, nil
}

// DefaultOpt is the opt size of a symbolic dimension (named sym, sym ""
// when unnamed) at position i of an input in the profile a build derives
// when it is given none: the opt of dims[sym] when given, 1 for a first
// dimension (a batch), else DefaultDimOpt.
func DefaultOpt(i int, sym string, dims map[string][3]int) int {
	if r, ok := dims[sym]; ok && sym != "" && r != [3]int{} {
		return r[1]
	}
	if i == 0 {
		return 1
	}
	return DefaultDimOpt
}

// DefaultDimOpt, DefaultDimMax: a symbolic dimension other than the first,
// not named in Options.Dims, ranges over [1, DefaultDimMax] with opt
// DefaultDimOpt in the derived profile.
const (
	DefaultDimOpt = 128
	DefaultDimMax = 512
)

// defaultProfile derives a profile for the model's dynamic inputs: a
// symbolic first dimension ranges over [1, maxBatch] with opt 1, a named
// dimension takes dims[name], any other over [1, DefaultDimMax] with opt
// DefaultDimOpt (DefaultOpt gives the opt values). It reports false when
// every input is static (no profile needed).
func defaultProfile(inputs []*ir.Value, maxBatch int, dims map[string][3]int) (engine.Profile, bool, error) {
	p := engine.Profile{Name: "default"}
	any := false
	for _, v := range inputs {
		if !v.Type.IsTensor() {
			continue // a sequence or optional value: no shapes to profile
		}
		if v.Type.Shape == nil {
			return p, false, fmt.Errorf("%w: input %q has unknown rank: give its shapes with --profile", ErrOptions, v.Name)
		}
		r := engine.Range{Input: v.Name}
		dyn := false
		for i, d := range v.Type.Shape {
			var mn, opt, mx int
			switch {
			case d.Known():
				mn, opt, mx = int(d.Val), int(d.Val), int(d.Val)
			case d.Sym != "" && dims[d.Sym] != [3]int{}:
				r := dims[d.Sym]
				mn, opt, mx = r[0], r[1], r[2]
				dyn = true
			case i == 0:
				mn, opt, mx = 1, DefaultOpt(i, d.Sym, dims), maxBatch
				dyn = true
			default:
				mn, opt, mx = 1, DefaultOpt(i, d.Sym, dims), DefaultDimMax
				dyn = true
			}
			r.Min, r.Opt, r.Max = append(r.Min, mn), append(r.Opt, opt), append(r.Max, mx)
		}
		if dyn {
			any = true
			p.Inputs = append(p.Inputs, r)
		}
	}
	return p, any, nil
}

func (b *builder) optimize() error {
	if _, err := ops.InferGraph(b.g); err != nil {
		return err
	}
	passes := map[string]int{}
	list := optimize.PassesFor(b.o.OptLevel, b.o.Device)
	if b.o.Precision == INT8 || hasQDQ(b.g) {
		// INT8 quantizes kiln::FusedConv (quant's rule and ImportQDQ's
		// patterns): the blocked layout's convolutions have no 8-bit form,
		// so an INT8 build keeps its convolutions in NCHW.
		list = slices.DeleteFunc(list, func(p optimize.Pass) bool { return p.Name() == "blocked" })
	}
	err := optimize.RunPasses(b.g, list, func(pass, msg string) {
		passes[pass]++
		for _, name := range mentionedNodes(msg) {
			b.fused[name] = append(b.fused[name], pass+": "+msg)
		}
	})
	if err != nil {
		return err
	}
	var names []string
	for p := range passes {
		names = append(names, p)
	}
	sort.Strings(names)
	var parts []string
	for _, p := range names {
		parts = append(parts, fmt.Sprintf("%s %d", p, passes[p]))
	}
	b.res.Header.Stats.NodesBefore = b.res.Header.Model.Nodes
	b.res.Header.Stats.NodesAfter = countNodes(b.g)
	b.logf("optimized (level %d): %d -> %d nodes; rewrites: %s", b.o.OptLevel, b.res.Header.Model.Nodes, b.res.Header.Stats.NodesAfter, strings.Join(parts, ", "))
	return nil
}

// mentionedNodes extracts the node names a pass message refers to: "NAME:
// ..." prefixes and "Op(NAME)" mentions.
func mentionedNodes(msg string) []string {
	var out []string
	if i := strings.Index(msg, ": "); i > 0 && !strings.ContainsAny(msg[:i], " ()") {
		out = append(out, msg[:i])
	}
	for s := msg; ; {
		i := strings.IndexByte(s, '(')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			break
		}
		out = append(out, s[i+1:i+j])
		s = s[i+j+1:]
	}
	return out
}

// layers fills the header's layer table from the final graph.
func (b *builder) layers() {
	h := &b.res.Header
	var wbytes int64
	for _, v := range b.g.Initializers {
		if v.Const != nil {
			wbytes += int64(len(v.Const.Data))
		}
	}
	for _, v := range b.g.Inputs {
		if v.Const != nil {
			wbytes += int64(len(v.Const.Data))
		}
	}
	h.Stats.WeightBytes = wbytes
	for _, n := range b.g.Nodes {
		l := plan.Layer{Name: n.Name, Op: n.OpType, Precision: layerPrecision(n), Fused: b.fused[n.Name], Reason: b.reasons[n.Name], Kernel: b.kernels[n.Name]}
		if b.exec != nil {
			l.Device = b.exec.Name()
			if why, ok := b.fallback[n.Name]; ok {
				// a fallback layer runs on the CPU's FP32 engine
				l.Device, l.Fallback = "cpu", why
			} else if l.Precision == FP32 {
				l.Precision = b.o.Precision // the device computes float layers in it
			}
		}
		if n.Domain != "" {
			l.Op = n.Domain + "::" + n.OpType
		}
		for _, v := range n.Inputs {
			if v == nil {
				l.Inputs = append(l.Inputs, "")
			} else {
				l.Inputs = append(l.Inputs, v.Name)
			}
		}
		for _, v := range n.Outputs {
			if v != nil {
				l.Outputs = append(l.Outputs, v.Name)
			}
		}
		h.Layers = append(h.Layers, l)
	}
	if b.exec != nil {
		// what the device reported of its layers: tactics, times, memory
		if err := h.ApplyLayerReports(b.res.Blobs); err != nil {
			b.logf("layer report: %v", err)
		}
		// the fallback layers' tactics, timed on the CPU
		if b.cpuTactics != nil && len(h.Tactics) < len(b.cpuTactics) {
			h.Tactics = append(h.Tactics, make([][]plan.Tactic, len(b.cpuTactics)-len(h.Tactics))...)
		}
		for i, set := range b.cpuTactics {
			for _, t := range set {
				if _, fell := b.fallback[t.Layer]; fell {
					h.Tactics[i] = append(h.Tactics[i], t)
				}
			}
		}
		for i, l := range h.Layers {
			if b.ruleInt8[l.Name] && l.Precision != INT8 && l.Precision != "" {
				h.Layers[i].Reason += "; the device chose " + l.Precision + " for it"
			}
		}
	}
}

// layerPrecision is the precision a node computes in, from its op and the
// type of its first float input.
func layerPrecision(n *ir.Node) string {
	if n.Domain == "kiln" && (n.OpType == "QConv" || n.OpType == "QMatMul") {
		return INT8
	}
	for _, v := range n.Inputs {
		if v == nil {
			continue
		}
		switch v.Type.DType {
		case tensor.Float16:
			return FP16
		case tensor.Float32:
			return FP32
		}
	}
	return "-"
}
