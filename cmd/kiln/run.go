package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kilnai/kiln"
	"github.com/kilnai/kiln/conformance"
	"github.com/kilnai/kiln/device/cpu"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/examples"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/onnx"
	"github.com/kilnai/kiln/tensor"
)

// shapeFlags collects repeated --shape name:1x3x224x224 flags.
type shapeFlags map[string][]int

func (s shapeFlags) String() string { return fmt.Sprint(map[string][]int(s)) }

func (s shapeFlags) Set(v string) error {
	name, dims, ok := strings.Cut(v, ":")
	if !ok || name == "" {
		return fmt.Errorf("want name:DIMxDIM..., got %q", v)
	}
	shape, err := parseDims(dims)
	if err != nil {
		return err
	}
	s[name] = shape
	return nil
}

// parseDims parses "1x3x224x224" ("" or "scalar" is rank 0).
func parseDims(s string) ([]int, error) {
	if s == "" || s == "scalar" {
		return []int{}, nil
	}
	var shape []int
	for _, p := range strings.Split(s, "x") {
		d, err := strconv.Atoi(p)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bad dimension %q in %q", p, s)
		}
		shape = append(shape, d)
	}
	return shape, nil
}

func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	data := fs.String("data", "", "test-data folder with input_N.pb (and output_N.pb to compare)")
	// The defaults depend on the plan's precision (precisionTolerance): the
	// flags' own defaults are zero so that the help shows only those.
	rtol := fs.Float64("rtol", 0, "relative tolerance for comparing outputs (default per precision: fp32 1e-3, fp16 1e-2, int8 5e-2)")
	atol := fs.Float64("atol", 0, "absolute tolerance for comparing outputs (default per precision: fp32 1e-4, fp16 1e-2, int8 1e-1)")
	iters := fs.Int("iterations", 1, "number of timed runs (latency statistics when > 1)")
	warmup := fs.Int("warmup", 1, "untimed runs before the timed ones (when iterations > 1)")
	seed := fs.Uint64("seed", 1, "seed for random inputs")
	duration := fs.Duration("duration", 0, "run timed iterations for this long instead of --iterations (e.g. 10s)")
	dumpProfile := fs.Bool("dump-profile", false, "print per-layer times (averaged over the timed runs)")
	exportJSON := fs.String("export-json", "", "write the results (latencies, per-layer times, comparison) to this JSON file")
	minCosine := fs.Float64("cosine", 0, "also require each float output's cosine similarity with --data's to be at least this (e.g. 0.9999 for fp16 plans)")
	saveData := fs.String("save-data", "", "write the inputs run and the outputs computed to this folder as a test data set (input_N.pb, output_N.pb): a reference for --data")
	intraOp := fs.Int("intra-op-threads", 0, "threads each CPU layer is split into (0: automatic: up to GOMAXPROCS while a core is free, on the caller's thread while the cores are busy; N: always at most N, as ONNX Runtime's intra_op_num_threads)")
	var bf buildFlags
	bf.register(fs, false)
	shapes := shapeFlags{}
	fs.Var(shapes, "shape", "input shape for random inputs, name:1x3x224x224 (repeatable)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if len(pos) != 1 {
		return usageError(fs, "want one MODEL.onnx, MODEL.plan or example, got %d arguments", len(pos))
	}
	if *iters < 1 || *warmup < 0 || *rtol < 0 || *atol < 0 || *duration < 0 || *minCosine < 0 || *minCosine > 1 {
		return fail("--iterations must be >= 1, --warmup, --rtol, --atol and --duration >= 0, --cosine between 0 and 1")
	}
	if err := cpu.SetThreads(*intraOp); err != nil {
		return usageError(fs, "--intra-op-threads %d: want 0 (automatic) or a positive count", *intraOp)
	}
	path := pos[0]
	if *data != "" && len(shapes) > 0 {
		return fail("--shape and --data cannot be combined: the data sets the shapes")
	}
	start := time.Now()
	// An ONNX model is built for the shapes it will run at: those of
	// --shape or --data, else the opt shapes of the first --profile or of
	// the default profile.
	var runAt *runShapes
	if path == "example" || !kiln.IsPlan(path) {
		var first *engine.Profile
		if len(bf.profiles.ps) > 0 {
			first = &bf.profiles.ps[0]
		}
		if runAt, err = shapesForRun(path, shapes, *data, first, bf.dims); err != nil {
			return fail("%v", err)
		}
	}
	m, err := loadForRun(path, &bf, runAt)
	if err != nil {
		if errors.Is(err, kiln.ErrPlan) {
			return fail("%v\n(rebuild the plan on this machine: kiln build MODEL.onnx -o %s)", err, path)
		}
		return fail("%v", err)
	}
	defer m.Close()
	how := "loaded"
	if h := m.Plan(); h != nil && !kiln.IsPlan(path) {
		how = fmt.Sprintf("built (%s, %s, %d -> %d nodes)", h.Device, h.Precision, h.Stats.NodesBefore, h.Stats.NodesAfter)
	}
	fmt.Printf("%s %s in %.1f ms\n", how, path, float64(time.Since(start).Microseconds())/1e3)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	tol := precisionTolerance["fp32"]
	if h := m.Plan(); h != nil {
		if t, ok := precisionTolerance[h.Precision]; ok {
			tol = t
		}
	}
	if !set["rtol"] {
		*rtol = tol[0]
	}
	if !set["atol"] {
		*atol = tol[1]
	}

	var inputs map[string]*tensor.Tensor
	var want []*tensor.Tensor
	random := false // inputs from randomInputs
	if path == "example" && *data == "" && len(shapes) == 0 {
		in, out, err := examples.TinyCNNTestData()
		if err != nil {
			return fail("%v", err)
		}
		inputs, want = map[string]*tensor.Tensor{"image": in}, []*tensor.Tensor{out}
	} else if *data != "" {
		if inputs, want, err = conformance.LoadDataSet(m, *data); err != nil {
			return fail("%v", err)
		}
	} else {
		if inputs, err = randomInputs(m, shapes, runAt, *seed); err != nil {
			return fail("%v", err)
		}
		random = true
	}
	for _, in := range m.Inputs() {
		if t := inputs[in.Name]; t != nil {
			line := fmt.Sprintf("input  %-20s %-8v %s", in.Name, t.DType, valueShape(t))
			if _, given := shapes[in.Name]; random && !given {
				if note := symbolicNote(in, t.Shape); note != "" {
					from := "the default profile's opt sizes"
					if h := m.Plan(); h != nil && len(h.Profiles) > 0 {
						from = fmt.Sprintf("the opt sizes of profile %q", h.Profiles[0].Name)
					}
					if runAt != nil && runAt.source[in.Name] != "" {
						from = runAt.source[in.Name]
					}
					line += fmt.Sprintf("  (%s: %s; set with --shape %s:DIMxDIM...)", note, from, in.Name)
				}
			}
			fmt.Println(line)
		}
	}
	ctx := context.Background()
	timed := *iters > 1 || *duration > 0
	if timed {
		for i := 0; i < *warmup; i++ {
			if _, err := m.Run(ctx, inputs); err != nil {
				return fail("%v", err)
			}
		}
	}
	prof := newLayerProfile()
	segProf := &segmentProfile{}
	onDevice := m.Plan() != nil && m.Plan().Device != "" && m.Plan().Device != "cpu"
	run := func() (map[string]*tensor.Tensor, error) {
		if *dumpProfile && onDevice {
			return segProf.run(ctx, m, inputs)
		}
		if *dumpProfile {
			return prof.run(ctx, m, inputs)
		}
		return m.Run(ctx, inputs)
	}
	var lat []time.Duration
	var outs map[string]*tensor.Tensor
	begin := time.Now()
	for i := 0; ; i++ {
		if *duration > 0 {
			if time.Since(begin) >= *duration && i > 0 {
				break
			}
		} else if i >= *iters {
			break
		}
		t0 := time.Now()
		outs, err = run()
		if err != nil {
			return fail("%v", err)
		}
		lat = append(lat, time.Since(t0))
	}
	report := runReport{Model: path, Iterations: len(lat)}
	code := exitOK
	for i, o := range m.Outputs() {
		got := outs[o.Name]
		line := fmt.Sprintf("output %-20s %-8v %-16s", o.Name, got.DType, valueShape(got))
		if i < len(want) {
			c := conformance.Compare(got, want[i], *rtol, *atol)
			if c.OK && c.Cosine < *minCosine && got.DType.IsFloat() {
				c.OK, c.Reason = false, fmt.Sprintf("cosine similarity %.6f below --cosine %g", c.Cosine, *minCosine)
			}
			status := "ok"
			if !c.OK {
				status, code = "MISMATCH", exitMismatch
			}
			line += fmt.Sprintf(" max abs err %.3g  max rel err %.3g  cosine %.6f  %s", c.MaxAbs, c.MaxRel, c.Cosine, status)
			report.Outputs = append(report.Outputs, outputReport{Name: o.Name, MaxAbs: c.MaxAbs, MaxRel: c.MaxRel, Cosine: c.Cosine, OK: c.OK, Reason: c.Reason})
			if !c.OK {
				line += " (" + c.Reason + ")"
			}
		}
		fmt.Println(line)
	}
	if *saveData != "" {
		if err := saveDataSet(*saveData, m, inputs, outs); err != nil {
			return fail("--save-data: %v", err)
		}
		fmt.Printf("wrote the inputs and outputs to %s\n", *saveData)
	}
	report.Latency = latencyStats(lat)
	if timed {
		printLatency(report.Latency)
	} else {
		fmt.Printf("latency %.3f ms\n", ms(lat[0]))
	}
	if *dumpProfile && onDevice {
		report.Segments = segProf.print(os.Stdout, m.Plan().Device, len(lat))
	} else if *dumpProfile {
		report.Layers = prof.print(os.Stdout, len(lat))
	}
	if *exportJSON != "" {
		if err := writeJSON(*exportJSON, report); err != nil {
			return fail("--export-json: %v", err)
		}
	}
	return code
}

// precisionTolerance holds the default comparison tolerances (rtol, atol)
// of each plan precision: reduced precision is compared with the FP32
// reference outputs of --data within these fixed bounds.
var precisionTolerance = map[string][2]float64{
	"fp32": {1e-3, 1e-4},
	"fp16": {1e-2, 1e-2},
	"int8": {5e-2, 1e-1},
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// randomInputs makes an input for every model input: shapes from --shape,
// else the shape the ONNX model was built for (runAt), else the plan's
// first profile's opt shape, else the declared shape with symbolic
// dimensions at the default profile's opt (build.DefaultOpt: 1 for the
// first, 128 for the others).
// The caller prints the sizes symbolic dimensions took (symbolicNote).
// Floats are uniform in [-1, 1); integers small (0..63, 0..1 for masks) so
// that embedding lookups stay in range.
func randomInputs(m *kiln.Model, shapes shapeFlags, runAt *runShapes, seed uint64) (map[string]*tensor.Tensor, error) {
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6e))
	known := map[string]bool{}
	inputs := map[string]*tensor.Tensor{}
	for _, in := range m.Inputs() {
		known[in.Name] = true
		shape, ok := shapes[in.Name]
		if !ok && runAt != nil {
			shape, ok = runAt.shapes[in.Name]
		}
		if h := m.Plan(); !ok && h != nil && len(h.Profiles) > 0 {
			if r, found := h.Profiles[0].Range(in.Name); found {
				shape, ok = r.Opt, true
			}
		}
		if !ok {
			shape = defaultShape(in)
		} else if len(in.Shape) > 0 && len(shape) != len(in.Shape) {
			return nil, fmt.Errorf("--shape %s: rank %d, the model's input has rank %d %v", in.Name, len(shape), len(in.Shape), in.Dims)
		}
		t, err := tensor.Make(in.DType, shape)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", in.Name, err)
		}
		hi := 64
		if strings.Contains(strings.ToLower(in.Name), "mask") {
			hi = 2
		}
		for i, n := 0, t.Len(); i < n; i++ {
			switch {
			case in.DType.IsFloat():
				t.SetFloat(i, rng.Float64()*2-1)
			case in.DType == tensor.Bool:
				t.SetFloat(i, float64(rng.IntN(2)))
			case in.DType == tensor.String:
				t.Strings[i] = strconv.Itoa(rng.IntN(hi))
			default:
				t.SetFloat(i, float64(rng.IntN(hi)))
			}
		}
		inputs[in.Name] = t
	}
	for name := range shapes {
		if !known[name] {
			return nil, fmt.Errorf("--shape %s: the model has no such input", name)
		}
	}
	return inputs, nil
}

// defaultShape is in's declared shape with its symbolic dimensions at the
// default profile's opt (a plan built without a profile).
func defaultShape(in kiln.IOInfo) []int {
	shape := make([]int, len(in.Shape))
	for i, d := range in.Shape {
		if d >= 0 {
			shape[i] = d
			continue
		}
		sym := ""
		if i < len(in.Dims) && in.Dims[i] != "?" {
			sym = in.Dims[i]
		}
		shape[i] = build.DefaultOpt(i, sym, nil)
	}
	return shape
}

// symbolicNote spells the sizes random input in took for its symbolic
// dimensions, "batch=1 seq=128" ("" when it has none).
func symbolicNote(in kiln.IOInfo, shape []int) string {
	var parts []string
	for i, d := range in.Shape {
		if d < 0 && i < len(shape) && i < len(in.Dims) {
			parts = append(parts, fmt.Sprintf("%s=%d", in.Dims[i], shape[i]))
		}
	}
	return strings.Join(parts, " ")
}

// profileRange is p's range of input (false when p is nil or has none).
func profileRange(p *engine.Profile, input string) (engine.Range, bool) {
	if p == nil {
		return engine.Range{}, false
	}
	return p.Range(input)
}

// runShapes are the input shapes kiln run builds an ONNX model for.
type runShapes struct {
	shapes map[string][]int
	// source says where the sizes of an input's symbolic dimensions came
	// from when not only from the default profile's opt.
	source map[string]string
}

// shapesForRun reads the inputs of the ONNX model at path (or the bundled
// example) and returns the shape each will run at: --shape's, else that of
// its tensor in --data (input_N.pb, by name, else by position), else its
// opt shape in profile (the first --profile, may be nil), else its
// declared shape with symbolic dimensions at the sizes those shapes gave
// them, else at the default profile's opt (build.DefaultOpt, with --dim's
// ranges).
func shapesForRun(path string, flags shapeFlags, data string, profile *engine.Profile, dims map[string][3]int) (*runShapes, error) {
	var f *onnx.File
	var err error
	if path == "example" {
		f, err = onnx.LoadBytes(examples.TinyCNNModel, "")
	} else {
		f, err = onnx.Load(path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	g, err := onnx.ToGraph(f.Model, f)
	if err != nil {
		return nil, err
	}
	rs := &runShapes{shapes: map[string][]int{}, source: map[string]string{}}
	var inputs []*ir.Value
	for _, v := range g.Inputs {
		if v.Const == nil {
			inputs = append(inputs, v)
		}
	}
	fromData := map[string][]int{}
	if data != "" {
		for i := 0; ; i++ {
			p := filepath.Join(data, fmt.Sprintf("input_%d.pb", i))
			if _, err := os.Stat(p); err != nil {
				break
			}
			var typ ir.Type
			if i < len(inputs) {
				typ = inputs[i].Type
			}
			t, name, err := onnx.ReadValueFile(p, typ)
			if err != nil {
				return nil, fmt.Errorf("--data: %w", err)
			}
			if name == "" && i < len(inputs) {
				name = inputs[i].Name
			}
			if !t.IsSequence() && !t.IsNone() {
				fromData[name] = t.Shape
			}
		}
	}
	// The given shapes first: the sizes they give symbolic dimensions
	// ("batch", "seq") hold for the other inputs too.
	known := map[string]bool{}
	syms := map[string]int{}
	for _, v := range inputs {
		known[v.Name] = true
		s, given := flags[v.Name]
		fromProfile, inProfile := profileRange(profile, v.Name)
		switch {
		case given:
			if v.Type.Shape != nil && len(s) != len(v.Type.Shape) {
				return nil, fmt.Errorf("--shape %s: rank %d, the model's input has rank %d %v", v.Name, len(s), len(v.Type.Shape), v.Type.Shape)
			}
		case fromData[v.Name] != nil:
			s = fromData[v.Name]
		case inProfile:
			s = fromProfile.Opt
		default:
			continue
		}
		rs.shapes[v.Name] = s
		if len(s) == len(v.Type.Shape) {
			for i, d := range v.Type.Shape {
				if d.Symbolic() {
					syms[d.Sym] = s[i]
				}
			}
		}
	}
	for _, v := range inputs {
		if _, ok := rs.shapes[v.Name]; ok {
			continue
		}
		if !v.Type.IsTensor() {
			if data == "" {
				return nil, fmt.Errorf("input %s is a %v: give its value with --data (random values are made only for tensors)", v.Name, v.Type)
			}
			continue
		}
		if v.Type.Shape == nil {
			if data == "" {
				return nil, fmt.Errorf("input %s has no known rank: give its shape with --shape %s:DIMxDIM (e.g. 1x3x224x224)", v.Name, v.Name)
			}
			continue
		}
		shape := make([]int, len(v.Type.Shape))
		given, def := false, false
		for i, d := range v.Type.Shape {
			switch {
			case d.Known():
				shape[i] = int(d.Val)
			case d.Symbolic() && syms[d.Sym] > 0:
				shape[i], given = syms[d.Sym], true
			default:
				shape[i], def = build.DefaultOpt(i, d.Sym, dims), true
			}
		}
		rs.shapes[v.Name] = shape
		switch {
		case given && def:
			rs.source[v.Name] = "sizes of the other inputs' --shape, else the default profile's opt"
		case given:
			rs.source[v.Name] = "sizes of the other inputs' --shape"
		}
	}
	for name := range flags {
		if !known[name] {
			return nil, fmt.Errorf("--shape %s: the model has no such input", name)
		}
	}
	return rs, nil
}

// valueShape formats a tensor's shape, a sequence's length ("3 elements")
// or an empty optional ("none").
func valueShape(t *tensor.Tensor) string {
	switch {
	case t.IsSequence():
		return fmt.Sprintf("%d elements", len(t.Elems))
	case t.IsNone():
		return "none"
	}
	return tensor.ShapeString(t.Shape)
}

// saveDataSet writes a test data folder: the model's inputs as input_N.pb
// and its outputs as output_N.pb, in the model's order, each named.
func saveDataSet(dir string, m *kiln.Model, inputs, outputs map[string]*tensor.Tensor) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	n := 0
	for _, in := range m.Inputs() {
		t := inputs[in.Name]
		if t == nil {
			continue // an optional input not given
		}
		if err := onnx.SaveValue(filepath.Join(dir, fmt.Sprintf("input_%d.pb", n)), in.Name, t, ir.Type{DType: in.DType}); err != nil {
			return err
		}
		n++
	}
	for i, o := range m.Outputs() {
		t := outputs[o.Name]
		if t == nil {
			return fmt.Errorf("output %q was not computed", o.Name)
		}
		if err := onnx.SaveValue(filepath.Join(dir, fmt.Sprintf("output_%d.pb", i)), o.Name, t, ir.Type{DType: o.DType}); err != nil {
			return err
		}
	}
	return nil
}
