package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/build"
	"github.com/kilnai/kiln/internal/tempfile"
)

// profileFlags collects --profile NAME:MIN,OPT,MAX ranges into the current
// profile; --profile-set NAME starts a new profile.
type profileFlags struct{ ps []engine.Profile }

func (p *profileFlags) String() string { return "" }

func (p *profileFlags) Set(v string) error {
	r, err := engine.ParseRange(v)
	if err != nil {
		return err
	}
	if len(p.ps) == 0 {
		p.ps = append(p.ps, engine.Profile{})
	}
	last := &p.ps[len(p.ps)-1]
	last.Inputs = append(last.Inputs, r)
	return nil
}

type profileSetFlag struct{ p *profileFlags }

func (f profileSetFlag) String() string { return "" }

func (f profileSetFlag) Set(name string) error {
	if len(f.p.ps) > 0 && len(f.p.ps[len(f.p.ps)-1].Inputs) == 0 {
		return errors.New("the previous --profile-set has no --profile ranges")
	}
	f.p.ps = append(f.p.ps, engine.Profile{Name: name})
	return nil
}

// dimFlags collects --dim NAME=MIN,OPT,MAX.
type dimFlags map[string][3]int

func (d dimFlags) String() string { return "" }

func (d dimFlags) Set(v string) error {
	name, spec, ok := strings.Cut(v, "=")
	parts := strings.Split(spec, ",")
	if !ok || name == "" || len(parts) != 3 {
		return fmt.Errorf("want NAME=MIN,OPT,MAX, got %q", v)
	}
	var r [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("bad number %q in %q", p, v)
		}
		r[i] = n
	}
	d[name] = r
	return nil
}

// layerPrecFlags collects --layer-precision NAME:PRECISION.
type layerPrecFlags map[string]string

func (l layerPrecFlags) String() string { return "" }

func (l layerPrecFlags) Set(v string) error {
	i := strings.LastIndexByte(v, ':')
	if i <= 0 {
		return fmt.Errorf("want LAYER:fp32|fp16|int8, got %q", v)
	}
	l[v[:i]] = v[i+1:]
	return nil
}

// minCosineFlag is --int8-min-cosine: a cosine similarity in (0, 1].
type minCosineFlag struct{ v float64 }

func (m *minCosineFlag) String() string {
	if m == nil || m.v == 0 {
		return ""
	}
	return strconv.FormatFloat(m.v, 'g', -1, 64)
}

func (m *minCosineFlag) Set(s string) error {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || v <= 0 || v > 1 {
		return fmt.Errorf("want a cosine similarity above 0 and at most 1, such as 0.999, got %q", s)
	}
	m.v = v
	return nil
}

// parseSize parses a byte size such as 512M, 2G, 1024 or 64K.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSuffix(strings.ToUpper(s), "B")
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (want e.g. 512M, 2G)", s)
	}
	return n * mult, nil
}

// buildFlags are the builder's flags, shared by kiln build and kiln run
// (which builds an ONNX model in memory).
type buildFlags struct {
	device, calibData, calibMethod, calibCache, timingCache, workspace string
	fp16, int8, noTiming, strictDevice                                 bool
	optLevel, maxBatch, calibRandom, sensitivityBatches                int
	minCosine                                                          minCosineFlag
	profiles                                                           profileFlags
	dims                                                               dimFlags
	layers                                                             layerPrecFlags
}

func (b *buildFlags) register(fs *flag.FlagSet, timingDefault bool) {
	fs.StringVar(&b.device, "device", "cpu", "device to build for: cpu or cuda[:N]; layers the device cannot run fall back to the CPU (the build log says which and why)")
	fs.BoolVar(&b.strictDevice, "strict-device", false, "refuse to build when a layer would fall back to the CPU instead of running on --device")
	fs.BoolVar(&b.fp16, "fp16", false, "store weights and activations as float16 (float32 accumulation)")
	fs.BoolVar(&b.int8, "int8", false, "INT8 post-training quantization (needs --calib-data, --calib-random or --calib-cache)")
	fs.StringVar(&b.calibData, "calib-data", "", "calibration data: a folder of input sets (test_data_set_*/input_N.pb)")
	fs.IntVar(&b.calibRandom, "calib-random", 0, "calibrate on N generated random batches (when there is no --calib-data)")
	fs.StringVar(&b.calibMethod, "calib-method", "", "calibration method: entropy (default), minmax or percentile")
	fs.StringVar(&b.calibCache, "calib-cache", "", "calibration cache file: written after calibration, read instead when there is no data")
	b.profiles = profileFlags{}
	fs.Var(&b.profiles, "profile", "input range `NAME:MIN,OPT,MAX` with shapes like 1x3x224x224 (repeat for more inputs)")
	fs.Var(profileSetFlag{&b.profiles}, "profile-set", "start another optimization profile named `NAME`; the --profile flags after it belong to it")
	b.dims = dimFlags{}
	fs.Var(b.dims, "dim", "range of a named symbolic dimension in the default profile, `NAME=MIN,OPT,MAX` (repeatable)")
	fs.IntVar(&b.maxBatch, "max-batch", 32, "largest batch of the default profile (a symbolic first dimension)")
	fs.IntVar(&b.optLevel, "opt-level", 2, "optimization level: 0 none, 1 eliminations and folding, 2 also the fusions and, on the CPU, convolutions\nin the blocked NCHWc layout (INT8 builds keep NCHW) (default 2; 3 to 5: on the CPU the same as 2; with --device cuda, tactic timing also tries cuDNN's graph-API engines, a longer build)")
	fs.StringVar(&b.timingCache, "timing-cache", "", "tactic timing cache file (read and updated)")
	fs.BoolVar(&b.noTiming, "no-timing", !timingDefault, "skip tactic timing: default implementations")
	fs.StringVar(&b.workspace, "workspace", "0", "memory `limit`, e.g. 64M (0: none): on the CPU the scratch memory of each layer's tactic (measured while timing), on cuda the engine's device memory and the scratch of the layers left to the CPU")
	b.layers = layerPrecFlags{}
	fs.Var(b.layers, "layer-precision", "precision of one layer, `NAME:fp32|fp16|int8` (repeatable)")
	fs.Var(&b.minCosine, "int8-min-cosine", "with --int8: measure each INT8 layer alone against FP32 (sensitivity analysis) and keep\nin float (fp32 on the CPU, fp16 on cuda) every layer whose output cosine falls below `COSINE`,\nsuch as 0.999; --layer-precision wins")
	fs.IntVar(&b.sensitivityBatches, "int8-sensitivity-batches", 0, fmt.Sprintf("run the sensitivity analysis on at most `N` calibration batches (each runs once per INT8 layer; default %d)", build.DefaultSensitivityBatches))
}

func (b *buildFlags) options() (build.Options, error) {
	o := build.Options{
		Device: b.device, Devices: deviceSet, OptLevel: b.optLevel, NoOptimization: b.optLevel == 0, MaxBatch: b.maxBatch, Dims: b.dims, Profiles: b.profiles.ps,
		CalibData: b.calibData, CalibBatches: b.calibRandom, CalibMethod: b.calibMethod, CalibCache: b.calibCache,
		LayerPrecision: b.layers, Int8MinCosine: b.minCosine.v, SensitivityBatches: b.sensitivityBatches, TimingCache: b.timingCache, NoTiming: b.noTiming, StrictDevice: b.strictDevice,
	}
	if b.fp16 && b.int8 {
		return o, errors.New("--fp16 and --int8 exclude each other")
	}
	if b.fp16 {
		o.Precision = build.FP16
	}
	if b.int8 {
		o.Precision = build.INT8
	}
	if b.optLevel < 0 || b.optLevel > 5 {
		return o, errors.New("--opt-level must be 0..5")
	}
	if len(b.profiles.ps) > 0 && len(b.profiles.ps[len(b.profiles.ps)-1].Inputs) == 0 {
		return o, errors.New("the last --profile-set has no --profile ranges")
	}
	ws, err := parseSize(b.workspace)
	if err != nil {
		return o, fmt.Errorf("--workspace: %w", err)
	}
	o.Workspace = ws
	return o, nil
}

// progressLine prints progress on one overwritten terminal line (on a
// terminal only) and log lines above it.
type progressLine struct {
	tty  bool
	last int
}

func newProgressLine() *progressLine {
	st, err := os.Stderr.Stat()
	return &progressLine{tty: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

func (p *progressLine) log(msg string) {
	p.clear()
	fmt.Fprintln(errOut, msg)
}

func (p *progressLine) progress(msg string) {
	if !p.tty {
		return
	}
	p.clear()
	if len(msg) > 100 {
		msg = msg[:100]
	}
	fmt.Fprint(os.Stderr, msg)
	p.last = len(msg)
}

func (p *progressLine) clear() {
	if p.tty && p.last > 0 {
		fmt.Fprintf(os.Stderr, "\r%s\r", strings.Repeat(" ", p.last))
		p.last = 0
	}
}

func buildCmd(args []string) int {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	out := fs.String("o", "", "plan `file` to write; its folder must exist (default: NAME.plan in the current folder, see above)")
	var bf buildFlags
	bf.register(fs, true)
	repo := fs.String("model-repository", "", "build every model of this repository (Triton layout) into --plan-cache as kiln serve would (each model's config gives its options), instead of one MODEL.onnx")
	planCache := fs.String("plan-cache", defaultPlanCache(), "with --model-repository: the plan cache folder kiln serve --plan-cache will read")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitError
	}
	if *repo != "" {
		if len(pos) != 0 {
			return usageError(fs, "--model-repository takes no MODEL.onnx, got %d arguments", len(pos))
		}
		return buildRepository(fs, *repo, *planCache)
	}
	if len(pos) != 1 {
		return usageError(fs, "want one MODEL.onnx, got %d arguments", len(pos))
	}
	o, err := bf.options()
	if err != nil {
		return fail("%v", err)
	}
	src := pos[0]
	dst := *out
	if dst == "" {
		dst = defaultPlanName(src)
	}
	if same(dst, src) {
		return fail("the plan would overwrite the model %s: give -o", src)
	}
	// the output is checked, and its temporary file created, before the
	// build, so that a bad -o fails at once
	for _, f := range []struct{ flag, path string }{{"--timing-cache", bf.timingCache}, {"--calib-cache", bf.calibCache}} {
		if err := checkFolder(f.flag, f.path); err != nil {
			return fail("%v", err)
		}
	}
	w, err := createPlan(dst)
	if err != nil {
		return fail("%v", err)
	}
	defer w.abort()
	pl := newProgressLine()
	o.Log, o.Progress = pl.log, pl.progress
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	res, err := build.Build(ctx, src, o)
	pl.clear()
	if err != nil {
		return fail("%v", err)
	}
	defer res.Close()
	if err := w.commit(res); err != nil {
		return fail("write plan: %v", err)
	}
	st, err := os.Stat(dst)
	if err != nil {
		return fail("write plan: %v", err)
	}
	h := res.Header
	fmt.Printf("built %s in %.2f s: %s, %s, %d -> %d nodes\n", dst, time.Since(start).Seconds(), h.Device, h.Precision, h.Stats.NodesBefore, h.Stats.NodesAfter)
	nw := 10
	for _, s := range res.Timings {
		nw = max(nw, len(s.Name))
	}
	for _, s := range res.Timings {
		fmt.Printf("  %-*s %8.1f ms\n", nw, s.Name, float64(s.Time.Microseconds())/1e3)
	}
	for _, p := range h.Profiles {
		fmt.Printf("  profile %s: %s\n", p.Name, p.String())
	}
	fmt.Printf("  weights %s, arena %s (intermediates %s), plan %s\n", bytesStr(h.Stats.WeightBytes), bytesStr(h.Stats.ArenaBytes), bytesStr(h.Stats.IntermediateBytes), bytesStr(st.Size()))
	if m := h.Stats.DeviceMemory; m != nil {
		// the arena above is the CPU's (layers that fall back); a device
		// that runs graphs itself keeps its own
		fmt.Printf("  on %s: weights %s; per execution context, arena %s and library workspace %s\n", h.Device,
			bytesStr(m.WeightBytes), bytesStr(m.ArenaBytes), bytesStr(m.WorkspaceBytes))
	}
	for _, w := range buildWarnings(h.Notes) {
		fmt.Printf("  warning: %s\n", w)
	}
	return exitOK
}

// buildWarnings returns the warnings of a build's log (the calibration
// data's and calibration's: "warning: ..." in a line, or after "; " at its
// end), each once, in order, for the summary after the build: the log
// scrolls by, and a plan calibrated on data unlike traffic should not pass
// unnoticed.
func buildWarnings(notes []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range notes {
		parts := strings.Split(n, "warning: ")
		for i, w := range parts[1:] {
			if before := parts[i]; !strings.HasSuffix(before, "; ") && strings.TrimSpace(before) != "" {
				continue // "warning: " inside a message, not a warning
			}
			w = strings.TrimSuffix(w, "; ")
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	return out
}

// defaultPlanName is where kiln build writes without -o: in the current
// folder, NAME.plan for a model NAME.onnx, or FOLDER.plan for
// FOLDER/model.onnx (a numeric Triton version folder is skipped, so
// repo/resnet/1/model.onnx gives resnet.plan).
func defaultPlanName(model string) string {
	base := strings.TrimSuffix(filepath.Base(model), filepath.Ext(model))
	if base == "model" {
		if abs, err := filepath.Abs(model); err == nil {
			dir := filepath.Dir(abs)
			if isVersionFolder(filepath.Base(dir)) {
				dir = filepath.Dir(dir)
			}
			if d := filepath.Base(dir); d != "." && d != string(filepath.Separator) {
				base = d
			}
		}
	}
	return base + ".plan"
}

func isVersionFolder(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// same reports whether two paths name the same file (or would).
func same(a, b string) bool {
	if sa, err := os.Stat(a); err == nil {
		if sb, err := os.Stat(b); err == nil {
			return os.SameFile(sa, sb)
		}
	}
	aa, err1 := filepath.Abs(a)
	ab, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == ab
}

// checkFolder checks, before a build, that the folder of a file the build
// will write exists.
func checkFolder(flag, path string) error {
	if path == "" {
		return nil
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return fmt.Errorf("%s %s: the folder %s does not exist", flag, path, dir)
	case err != nil:
		return fmt.Errorf("%s %s: %w", flag, path, err)
	case !st.IsDir():
		return fmt.Errorf("%s %s: %s is not a folder", flag, path, dir)
	}
	return nil
}

// planWriter writes a plan atomically: a temporary file next to the
// destination, created before the build with mode 0644 less the umask (as
// any file a command writes), renamed over the destination once complete.
type planWriter struct {
	dst string
	f   *os.File
}

// createPlan checks that dst can be written (its folder exists and takes
// files, dst is not a folder) by creating the temporary file now.
func createPlan(dst string) (*planWriter, error) {
	dir := filepath.Dir(dst)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return nil, fmt.Errorf("-o %s: the folder %s does not exist", dst, dir)
	case err != nil:
		return nil, fmt.Errorf("-o %s: %w", dst, err)
	case !st.IsDir():
		return nil, fmt.Errorf("-o %s: %s is not a folder", dst, dir)
	}
	if st, err := os.Stat(dst); err == nil && st.IsDir() {
		return nil, fmt.Errorf("-o %s: is a folder (give a file name such as %s)", dst, filepath.Join(dst, "model.plan"))
	}
	f, err := tempfile.Create(dir, "."+filepath.Base(dst)+".tmp")
	if errors.Is(err, iofs.ErrPermission) {
		return nil, fmt.Errorf("-o %s: cannot write in the folder %s: permission denied", dst, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("-o %s: cannot write in the folder %s: %w", dst, dir, err)
	}
	return &planWriter{dst: dst, f: f}, nil
}

// commit writes the plan and renames it over the destination.
func (w *planWriter) commit(res *build.Result) error {
	bw := bufio.NewWriterSize(w.f, 1<<20)
	err := res.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.dst)
	}
	if err == nil {
		w.f = nil
	}
	return err
}

// abort removes the temporary file unless commit renamed it.
func (w *planWriter) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

func bytesStr(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
