package tactic

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"time"

	"github.com/kilnai/kiln/device"
	cpukernels "github.com/kilnai/kiln/device/cpu/kernels"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

var (
	// ErrNames is returned by Select when node names do not identify the
	// nodes: two share a name, or a node with tactics has none.
	ErrNames = errors.New("tactic: node names are not unique")
	// ErrShape is returned by Select when a tactical node's input has no
	// concrete shape (the graph inputs must be set to the opt shape and
	// the shapes inferred first).
	ErrShape = errors.New("tactic: input shape not concrete")
	// ErrRun is returned by Select when a tactic fails to run, or computes
	// something other than the default tactic does.
	ErrRun = errors.New("tactic: tactic failed")
	// ErrWorkspace is returned when no tactic of a layer fits
	// Options.Workspace.
	ErrWorkspace = errors.New("tactic: workspace too small")
)

// DefaultRuns is the number of timed runs of each tactic when Options.Runs
// is zero. With 5, two CPU builds a few minutes apart on a loaded machine
// (load average 8-13) chose different tactics for a third of resnet_mini's
// convolutions (ops/nn/NOTES.md, section 16): the fastest of 10 runs is
// more often one in which no other process held a core.
const DefaultRuns = 10

// Options tune Select.
type Options struct {
	// Runs is the number of timed runs of each tactic, after one warm-up
	// run; the fastest is its time. Zero means DefaultRuns.
	Runs int
	// MinGain, when positive, is how much faster than the default tactic
	// another one must be to be chosen, as a fraction (0.05: 5% faster):
	// on a busy machine, differences smaller than the timing noise then
	// keep the default. Zero keeps the fastest.
	MinGain float64
	// Progress, when set, is called for each tactic of each layer once it
	// is timed (the tactics of a layer are timed together) or found in the
	// cache.
	Progress func(Progress)
	// Workspace, when positive, bounds the scratch memory (bytes) a
	// chosen tactic may use at the opt shape: tactics measured above it
	// are not chosen. The scratch is measured during each tactic's
	// warm-up run (ops.ScratchMeter) and kept in the cache; a cached time
	// without its scratch is measured again.
	Workspace int64
}

// Progress is one step of Select, for a progress line.
type Progress struct {
	// Layer is the node name, Op its "domain::type"; I counts the layers
	// with tactics from 1 to N.
	Layer, Op string
	I, N      int
	// Tactic was timed at Time, or found in the cache (Cached).
	Tactic string
	Time   time.Duration
	Cached bool
	// Cold is set when the layer was timed with its weights cold
	// (CPUTimer), on Copies copies of them.
	Cold   bool
	Copies int
}

// String formats p as a progress line:
// "[3/20] conv1 (kiln::FusedConv) winograd4x4 1.234ms", with " (cached)"
// or " (weights cold, 3 copies)" after it.
func (p Progress) String() string {
	s := fmt.Sprintf("[%d/%d] %s (%s) %s %v", p.I, p.N, p.Layer, p.Op, p.Tactic, p.Time)
	if p.Cached {
		s += " (cached)"
	}
	if p.Cold {
		s += fmt.Sprintf(" (weights cold, %d copies)", p.Copies)
	}
	return s
}

// Choice is the tactic Select picked for one layer.
type Choice struct {
	// Tactic is the fastest tactic and Time its fastest run.
	Tactic string
	Time   time.Duration
	// Default is the tactic the kernel uses when none is set (the first
	// of its Tactics).
	Default string
	// Cached is set when every time came from the cache (or from a layer
	// of the same signature earlier in the graph): nothing was measured
	// for this layer.
	Cached bool
	// Times has the time of every candidate.
	Times map[string]time.Duration
	// Scratch has the peak scratch bytes of the candidates whose scratch
	// was measured (with Options.Workspace).
	Scratch map[string]int64
	// Cold is set when the layer's weights are heavy enough to be timed
	// cold, as a model reads them (CPUTimer), and Copies is the number of
	// copies of each tactic's weights the runs took in turn (1: the
	// tactics' own together were enough). Both are zero when nothing was
	// measured (Cached).
	Cold   bool
	Copies int
	// Index is the chosen tactic's place among the layer's candidates
	// (0: the default).
	Index int
	// Measured counts the candidates measured for this choice (not read
	// from the cache).
	Measured int
	// Failed has the reason of each candidate that did not run (Choose
	// skips it; Select's tactics all run or Select fails).
	Failed map[string]error
}

// Speedup is how many times faster the chosen tactic is than the default.
func (c Choice) Speedup() float64 {
	d, ok := c.Times[c.Default]
	if !ok || c.Time <= 0 {
		return 1
	}
	return float64(d) / float64(c.Time)
}

// layer is one node with a choice to make.
type layer struct {
	node    *ir.Node
	tactics []string
	sig     string
}

// Select picks a tactic for every node of g's top level whose kernel is
// ops.Tactical with two or more candidates at the current shapes. g must be
// optimized and its inputs set to concrete shapes (the profile's opt
// shape); Select infers the shapes again (ops.InferGraph). Each candidate
// runs on the node's input shapes, constants as they are and other inputs
// filled with deterministic pseudo-random values, once to warm up and check
// its output against the default tactic's, then opt.Runs times, the runs of
// the candidates interleaved; its fastest run counts (other processes on
// the machine only ever add time, so on a shared machine the minimum is a
// steadier measure of a kernel's own cost than the median). A layer with
// heavy weights runs them cold, as a model does: its runs take copies of
// the weights in turn (CPUTimer, Choice.Cold). Times found in cache (for
// fingerprint fp, filed with CPUTimer) are not measured
// again and new ones are stored in it, so that a layer with the signature of
// an earlier one is not measured either (cache may be nil; the caller saves
// it). The result maps node names to choices.
func Select(ctx context.Context, g *ir.Graph, fp device.Fingerprint, cache *Cache, opt Options) (map[string]Choice, error) {
	if opt.Runs <= 0 {
		opt.Runs = DefaultRuns
	}
	if cache == nil {
		cache = New() // layers of one signature are still measured once
	}
	// the kernels the engine runs (the CPU registry's, else the ops'
	// reference ones): their tactics are what is timed
	kernels, err := ops.InferGraphWith(g, cpukernels.Kernel)
	if err != nil {
		return nil, fmt.Errorf("tactic: %w", err)
	}
	var layers []layer
	seen := map[string]bool{}
	for _, n := range g.Nodes {
		if n.Name != "" && seen[n.Name] {
			return nil, fmt.Errorf("%w: two nodes are named %q", ErrNames, n.Name)
		}
		seen[n.Name] = true
		tk, ok := kernels[n].(ops.Tactical)
		if !ok || folded(n) {
			continue
		}
		tactics := tk.Tactics(n.Inputs)
		if len(tactics) < 2 {
			continue
		}
		if n.Name == "" {
			return nil, fmt.Errorf("%w: a %s node with tactics has no name", ErrNames, n.OpType)
		}
		layers = append(layers, layer{node: n, tactics: tactics, sig: Signature(g, n)})
	}
	opset := g.Opset()
	choices := make(map[string]Choice, len(layers))
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := selectLayer(ctx, g, opset, l, i+1, len(layers), fp, cache, opt)
		if err != nil {
			return nil, err
		}
		choices[l.node.Name] = c
	}
	return choices, nil
}

// folded reports whether every output of n is a constant (the engine does
// not run n).
func folded(n *ir.Node) bool {
	if len(n.Outputs) == 0 {
		return false
	}
	for _, o := range n.Outputs {
		if o != nil && o.Const == nil {
			return false
		}
	}
	return true
}

func selectLayer(ctx context.Context, g *ir.Graph, opset int64, l layer, i, n int, fp device.Fingerprint, cache *Cache, opt Options) (Choice, error) {
	node := l.node
	op := node.Domain + "::" + node.OpType
	limit := opt.Workspace > 0 && ops.ScratchMeter != nil
	tm := &cpuTimer{g: g, opset: opset, node: node, tactics: l.tactics, runs: opt.Runs, scratch: limit}
	rule := Rule{MinGain: opt.MinGain}
	if limit {
		rule.Workspace = opt.Workspace
	}
	if opt.Progress != nil {
		rule.Progress = func(j int, d time.Duration, cached bool) {
			p := Progress{Layer: node.Name, Op: op, I: i, N: n, Tactic: l.tactics[j], Time: d, Cached: cached}
			if !cached {
				p.Cold, p.Copies = tm.cold, tm.copies
			}
			opt.Progress(p)
		}
	}
	c, err := Choose(ctx, fp, cache, Layer{Name: node.Name, Op: node.OpType, Sig: l.sig, Candidates: l.tactics}, tm, rule)
	if err != nil {
		return Choice{}, err
	}
	c.Cold, c.Copies = tm.cold, tm.copies
	return c, nil
}

// cpuTimer is the CPU's Timer of one layer (CPUTimer): the tactics to
// measure run together in measure, after a reference run of the default
// (newMeasurer); any failure fails the choice (ErrRun).
type cpuTimer struct {
	g       *ir.Graph
	opset   int64
	node    *ir.Node
	tactics []string
	runs    int
	scratch bool
	// cold and copies are what measure found (zero until it ran).
	cold   bool
	copies int
}

func (t *cpuTimer) Name() string { return CPUTimer }

func (t *cpuTimer) Time(ctx context.Context, todo []int, _ []time.Duration) ([]Result, error) {
	m, err := newMeasurer(t.g, t.opset, t.node)
	if err != nil {
		return nil, err
	}
	runtime.GC() // so that garbage of earlier layers is not collected while timing this one
	names := make([]string, len(todo))
	for k, i := range todo {
		names[k] = t.tactics[i]
	}
	tm, err := m.measure(ctx, names, t.runs, t.scratch)
	if err != nil {
		return nil, err
	}
	t.cold, t.copies = tm.cold, tm.copies
	res := make([]Result, len(names))
	for k, name := range names {
		res[k].Time = tm.best[name]
		res[k].Scratch, res[k].HasScratch = tm.scratch[name]
	}
	return res, nil
}

// measurer runs one node's kernel with each tactic on fixed inputs.
type measurer struct {
	node  *ir.Node
	opset int64
	in    []*tensor.Tensor
	ref   []*tensor.Tensor // the default tactic's outputs
}

func newMeasurer(g *ir.Graph, opset int64, n *ir.Node) (*measurer, error) {
	m := &measurer{node: n, opset: opset}
	for _, v := range n.Inputs {
		if v == nil {
			m.in = append(m.in, nil)
			continue
		}
		if v.Const != nil {
			m.in = append(m.in, v.Const)
			continue
		}
		if v.Type.Shape == nil {
			return nil, fmt.Errorf("%w: input %q of node %q (%s) has no known shape", ErrShape, v.Name, n.Name, n.OpType)
		}
		shape := make([]int, len(v.Type.Shape))
		for i, d := range v.Type.Shape {
			if !d.Known() {
				return nil, fmt.Errorf("%w: input %q of node %q (%s) has shape %v; set the graph inputs to concrete shapes first", ErrShape, v.Name, n.Name, n.OpType, v.Type.Shape)
			}
			shape[i] = int(d.Val)
		}
		t, err := randomTensor(v.Name, v.Type.DType, shape)
		if err != nil {
			return nil, fmt.Errorf("%w: input %q of node %q: %v", ErrShape, v.Name, n.Name, err)
		}
		m.in = append(m.in, t)
	}
	// The reference: the kernel as prepared, no tactic set.
	k, err := cpukernels.Kernel(n, opset)
	if err != nil {
		return nil, err
	}
	outs, err := m.run(context.Background(), k, m.in, &arena{})
	if err != nil {
		return nil, fmt.Errorf("%w: node %q (%s), default tactic: %w", ErrRun, n.Name, n.OpType, err)
	}
	for _, o := range outs {
		m.ref = append(m.ref, o.Clone())
	}
	return m, nil
}

// run runs k once on inputs in (m's, or copies of its constants), its outputs in a, a kernel panic turned
// into an error.
func (m *measurer) run(ctx context.Context, k ops.Kernel, in []*tensor.Tensor, a *arena) (outs []*tensor.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	a.next = 0
	return k.Run(&ops.Env{Ctx: ctx, Alloc: a.alloc}, in)
}

// timing is what measure found.
type timing struct {
	best    map[string]time.Duration
	scratch map[string]int64
	// cold is set when the layer was timed with its weights cold, on
	// copies copies of each tactic's weights (see CPUTimer).
	cold   bool
	copies int
}

// measure returns the fastest time of each tactic over runs runs, after a
// warm-up run whose outputs must match the default tactic's. The runs are
// interleaved (one of each tactic per round), so that a change of load on
// the machine affects every tactic alike. A layer with heavy weights
// (coldPlan, from what each tactic's preparation and first run allocated)
// is timed with them cold: round r runs every tactic on copy r%copies of
// the constants, each tactic prepared from it with its own packed weights
// (CPUTimer).
func (m *measurer) measure(ctx context.Context, tactics []string, runs int, scratch bool) (timing, error) {
	n := m.node
	peak := map[string]int64{}
	// kernels[i][j] runs tactic i on copy j of the weights, ins[i][j]
	kernels := make([][]ops.Kernel, len(tactics))
	ins := make([][][]*tensor.Tensor, len(tactics))
	arenas := make([]*arena, len(tactics))
	weights := make([]int64, len(tactics))
	consts := constBytes(n, m.in)
	unique := consts
	prepare := func(node *ir.Node, t string) (ops.Kernel, error) {
		k, err := cpukernels.Kernel(node, m.opset)
		if err != nil {
			return nil, err
		}
		tk, ok := k.(ops.Tactical)
		if !ok {
			return nil, fmt.Errorf("%w: node %q (%s) has no tactics", ErrRun, n.Name, n.OpType)
		}
		if err := tk.SetTactic(t); err != nil {
			return nil, fmt.Errorf("%w: node %q (%s): %w", ErrRun, n.Name, n.OpType, err)
		}
		return k, nil
	}
	for i, t := range tactics {
		before := allocated()
		k, err := prepare(n, t)
		if err != nil {
			return timing{}, err
		}
		kernels[i], ins[i], arenas[i] = []ops.Kernel{k}, [][]*tensor.Tensor{m.in}, &arena{}
		var outs []*tensor.Tensor
		if scratch {
			peak[t] = ops.ScratchMeter(func() { outs, err = m.run(ctx, k, m.in, arenas[i]) })
		} else {
			outs, err = m.run(ctx, k, m.in, arenas[i])
		}
		if err != nil {
			return timing{}, fmt.Errorf("%w: node %q (%s), tactic %q: %w", ErrRun, n.Name, n.OpType, t, err)
		}
		// What preparing and first running it allocated, its outputs
		// aside: the tactic's packed weights, and the scratch buffers of
		// its first run, which are not weights (an im2col of a light
		// filter takes megabytes): counted up to maxPacked times the
		// constants.
		alloc := int64(allocated() - before)
		for _, o := range outs {
			if o != nil {
				alloc -= int64(len(o.Data))
			}
		}
		packed := min(alloc, maxPacked*consts)
		weights[i] = max(consts, packed)
		if packed >= consts/2 {
			unique += packed // its own packed form; the others read the constants
		}
		if err := sameOutputs(outs, m.ref); err != nil {
			return timing{}, fmt.Errorf("%w: node %q (%s), tactic %q differs from the default: %v", ErrRun, n.Name, n.OpType, t, err)
		}
	}
	cold, copies := coldPlan(weights, unique, l2Bytes())
	for j := 1; j < copies; j++ {
		node, in := withCopiedConsts(n, m.in) // copy j of the constants, its tactics' packed forms their own
		for i, t := range tactics {
			k, err := prepare(node, t)
			if err != nil {
				return timing{}, err
			}
			// the warm-up run: lazily packed weights made, pages touched
			if _, err := m.run(ctx, k, in, arenas[i]); err != nil {
				return timing{}, fmt.Errorf("%w: node %q (%s), tactic %q: %w", ErrRun, n.Name, n.OpType, t, err)
			}
			kernels[i], ins[i] = append(kernels[i], k), append(ins[i], in)
		}
	}
	times := make([][]time.Duration, len(tactics))
	for r := 0; r < runs; r++ {
		j := r % copies
		for i, t := range tactics {
			if err := ctx.Err(); err != nil {
				return timing{}, err
			}
			start := time.Now()
			if _, err := m.run(ctx, kernels[i][j], ins[i][j], arenas[i]); err != nil {
				return timing{}, fmt.Errorf("%w: node %q (%s), tactic %q: %w", ErrRun, n.Name, n.OpType, t, err)
			}
			times[i] = append(times[i], time.Since(start))
		}
	}
	best := make(map[string]time.Duration, len(tactics))
	for i, t := range tactics {
		slices.Sort(times[i])
		best[t] = max(times[i][0], 1)
	}
	return timing{best: best, scratch: peak, cold: cold, copies: copies}, nil
}

// sameOutputs checks a tactic's outputs against the default's: same types
// and shapes, float elements within tolerance of the largest magnitude,
// others equal. A tactic sums in another order, it does not compute
// something else: its float32 result is within 1e-3 of the largest
// magnitude. A float16 or bfloat16 output is that float32 result rounded
// to the narrower type (kernels compute reduced precision in float32, see
// ops/fp16.go), so two tactics may also differ by one unit in its last
// place: floatTolerance adds the type's epsilon. Comparing such outputs bit
// for bit failed every FP16 build with timing on.
func sameOutputs(got, want []*tensor.Tensor) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d outputs, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g == nil || g.DType != w.DType || tensor.ShapeString(g.Shape) != tensor.ShapeString(w.Shape) {
			return fmt.Errorf("output %d is not %v%s", i, w.DType, tensor.ShapeString(w.Shape))
		}
		tol, ok := floatTolerance[w.DType]
		if !ok {
			if string(g.Data) != string(w.Data) {
				return fmt.Errorf("output %d differs", i)
			}
			continue
		}
		at := func(t *tensor.Tensor) func(int) float64 { return t.Float }
		if w.DType == tensor.Float32 {
			at = func(t *tensor.Tensor) func(int) float64 {
				v := t.Float32s()
				return func(j int) float64 { return float64(v[j]) }
			}
		}
		gat, wat := at(g), at(w)
		n := w.Len()
		scale := 1.0
		for j := 0; j < n; j++ {
			if v := math.Abs(wat(j)); !math.IsInf(v, 0) {
				scale = max(scale, v)
			}
		}
		for j := 0; j < n; j++ {
			gv, wv := gat(j), wat(j)
			d := math.Abs(gv - wv)
			if !(d <= tol*scale) && !(math.IsNaN(wv) && math.IsNaN(gv)) && gv != wv {
				return fmt.Errorf("output %d (%v) element %d is %g, want %g (tolerance %.3g of the largest magnitude %g)", i, w.DType, j, gv, wv, tol, scale)
			}
		}
	}
	return nil
}

// floatTolerance is how far, relative to an output's largest magnitude, a
// tactic's float element may be from the default tactic's: 1e-3 for the
// order of the sums, plus one unit in the last place of the narrower
// float types (2^-10 for float16, 2^-7 for bfloat16), whose values are
// rounded float32 results.
var floatTolerance = map[tensor.DType]float64{
	tensor.Float32:  1e-3,
	tensor.Float64:  1e-3,
	tensor.Float16:  1e-3 + 1.0/(1<<10),
	tensor.BFloat16: 1e-3 + 1.0/(1<<7),
}

// arena reuses the output tensors of a kernel from run to run, as an
// execution context's arena does; new float32 ones are filled with NaN, so
// that an element a kernel does not write shows.
type arena struct {
	bufs []*tensor.Tensor
	next int
}

func (a *arena) alloc(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	i := a.next
	a.next++
	if i < len(a.bufs) {
		if t := a.bufs[i]; t.DType == dt && slices.Equal(t.Shape, shape) {
			return t, nil
		}
	}
	t, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, err
	}
	if dt == tensor.Float32 {
		v := t.Float32s()
		for j := range v {
			v[j] = float32(math.NaN())
		}
	}
	if i < len(a.bufs) {
		a.bufs[i] = t
	} else {
		a.bufs = append(a.bufs, t)
	}
	return t, nil
}

// randomTensor returns a tensor of the given type and shape with
// pseudo-random contents seeded by name: floats uniform in [-1, 1),
// integers and booleans zero (they may be indices).
func randomTensor(name string, dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	t, err := tensor.Make(dt, shape)
	if err != nil {
		return nil, err
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	r := rand.New(rand.NewPCG(h.Sum64(), 0x6b696c6e))
	switch dt {
	case tensor.Float32:
		v := t.Float32s()
		for i := range v {
			v[i] = float32(r.Float64()*2 - 1)
		}
	case tensor.Float64:
		v := t.Float64s()
		for i := range v {
			v[i] = r.Float64()*2 - 1
		}
	case tensor.Float16:
		v := t.Halfs()
		for i := range v {
			v[i] = tensor.Float32ToHalf(float32(r.Float64()*2 - 1))
		}
	case tensor.BFloat16:
		v := t.BHalfs()
		for i := range v {
			v[i] = tensor.Float32ToBF16(float32(r.Float64()*2 - 1))
		}
	}
	return t, nil
}

// Tactics returns the chosen tactic of each node, by node name: the form
// engine.Options.Tactics takes.
func Tactics(choices map[string]Choice) map[string]string {
	out := make(map[string]string, len(choices))
	for name, c := range choices {
		out[name] = c.Tactic
	}
	return out
}

// Names returns the node names of choices, sorted.
func Names(choices map[string]Choice) []string {
	names := make([]string, 0, len(choices))
	for n := range choices {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
