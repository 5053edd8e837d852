package quant

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// LayerSensitivity is the accuracy of a model with one layer alone in
// INT8, the rest in FP32.
type LayerSensitivity struct {
	// Name and Op name the layer.
	Name string `json:"name"`
	Op   string `json:"op"`
	// Cosine is the least cosine similarity over the model's outputs
	// against FP32.
	Cosine float64 `json:"cosine"`
}

// SensitivityReport lists the layers QuantizeINT8 would run in INT8, most
// sensitive (least cosine) first.
type SensitivityReport struct {
	Layers []LayerSensitivity `json:"layers"`
}

// String formats the report as a table.
func (r *SensitivityReport) String() string {
	var b strings.Builder
	w := 5
	for _, l := range r.Layers {
		w = max(w, len(l.Name))
	}
	fmt.Fprintf(&b, "%-*s  %-11s  %s\n", w, "layer", "op", "cosine with this layer alone in int8")
	for _, l := range r.Layers {
		fmt.Fprintf(&b, "%-*s  %-11s  %.6f\n", w, l.Name, l.Op, l.Cosine)
	}
	return b.String()
}

// Below returns overrides keeping in FP32 the layers whose cosine alone in
// INT8 is below minCosine (for INT8Options.Layers).
func (r *SensitivityReport) Below(minCosine float64) map[string]Precision {
	out := map[string]Precision{}
	for _, l := range r.Layers {
		if l.Cosine < minCosine {
			out[l.Name] = PrecisionFP32
		}
	}
	return out
}

// graphState is what the INT8 rewrite changes in a graph, to put back.
type graphState struct {
	nodes, producers []*ir.Node
	outputs          []*ir.Value
	inits            []*ir.Value
	opsets           map[string]int64
}

func saveGraph(g *ir.Graph) *graphState {
	s := &graphState{nodes: append([]*ir.Node(nil), g.Nodes...), inits: append([]*ir.Value(nil), g.Initializers...), opsets: maps.Clone(g.Opsets)}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o != nil {
				s.outputs = append(s.outputs, o)
				s.producers = append(s.producers, o.Producer)
			}
		}
	}
	return s
}

func (s *graphState) restore(g *ir.Graph) {
	g.Nodes = append(g.Nodes[:0:0], s.nodes...)
	g.Initializers = append(g.Initializers[:0:0], s.inits...)
	g.Opsets = maps.Clone(s.opsets)
	for i, o := range s.outputs {
		o.Producer = s.producers[i]
	}
}

// SensitivityOptions tune SensitivityWith.
type SensitivityOptions struct {
	// Ref is the FP32 reference engine of g, when the caller has one
	// (nil: one is built). Its outputs on the batches are computed once
	// and compared with every layer's run.
	Ref Runner
	// Progress, when set, is called after each layer is measured.
	Progress func(done, total int)
}

// Sensitivity measures, for every layer QuantizeINT8 would run in INT8
// with opt, the accuracy of g with that layer alone in INT8 against FP32
// on the batches: the layers INT8 hurts most, to keep in FP32 with
// INT8Options.Layers (Below). It builds one engine per layer, so it costs
// about as many runs of the batches as there are INT8 layers. g is left as
// it was.
func Sensitivity(ctx context.Context, g *ir.Graph, t *Table, batches []map[string]*tensor.Tensor, opt INT8Options) (*SensitivityReport, error) {
	return SensitivityWith(ctx, g, t, batches, opt, SensitivityOptions{})
}

// SensitivityWith is Sensitivity with a reference engine to reuse and
// progress reports. The reference runs each batch once, whatever the
// number of layers.
func SensitivityWith(ctx context.Context, g *ir.Graph, t *Table, batches []map[string]*tensor.Tensor, opt INT8Options, so SensitivityOptions) (*SensitivityReport, error) {
	rep, _, err := sensitivity(ctx, g, t, batches, opt, so, true)
	return rep, err
}

// sensitivity is SensitivityWith; with tails, each layer's measurement
// runs only the part of the graph the layer changes, on the values the
// reference computed before it (where it can), and it returns how many
// layers were measured so.
func sensitivity(ctx context.Context, g *ir.Graph, t *Table, batches []map[string]*tensor.Tensor, opt INT8Options, so SensitivityOptions, tails bool) (*SensitivityReport, int, error) {
	if len(batches) == 0 {
		return nil, 0, fmt.Errorf("%w: no batches", ErrCompare)
	}
	var ref Runner = so.Ref
	if ref == nil {
		e, err := engine.New(g)
		if err != nil {
			return nil, 0, err
		}
		ref = e
	}
	saved := saveGraph(g)
	defer saved.restore(g)
	all, err := QuantizeINT8(g, t, opt)
	saved.restore(g)
	if err != nil {
		return nil, 0, err
	}
	var int8Layers []LayerDecision
	for _, d := range all.Layers {
		if d.Precision == PrecisionINT8 {
			int8Layers = append(int8Layers, d)
		}
	}
	rep := &SensitivityReport{}
	if len(int8Layers) == 0 {
		return rep, 0, nil
	}
	// the graph was checked against the table above: the rewrites of one
	// layer each need not hash it again
	checked := *t
	checked.Graph = ""
	cached := &replayRunner{ref: ref, batches: batches, keep: tails && flat(g)}
	if err := cached.record(ctx); err != nil {
		return nil, 0, err
	}
	tailed := 0
	for i, d := range int8Layers {
		layers := maps.Clone(opt.Layers)
		if layers == nil {
			layers = map[string]Precision{}
		}
		for _, o := range int8Layers {
			layers[o.Name] = PrecisionFP32
		}
		layers[d.Name] = PrecisionINT8
		one := opt
		one.Layers = layers
		if _, err := QuantizeINT8(g, &checked, one); err != nil {
			return nil, 0, fmt.Errorf("layer %q: %w", d.Name, err)
		}
		var test Runner
		if tr := cached.tail(g, d.Name); tr != nil {
			test = tr // the layers before d computed once, by the reference
			tailed++
		} else {
			qe, err := engine.New(g)
			if err != nil {
				return nil, 0, fmt.Errorf("layer %q: %w", d.Name, err)
			}
			test = qe
		}
		acc, err := compare(ctx, cached, test, batches)
		saved.restore(g) // after the run: the engine reads g's nodes
		if err != nil {
			return nil, 0, fmt.Errorf("layer %q: %w", d.Name, err)
		}
		rep.Layers = append(rep.Layers, LayerSensitivity{Name: d.Name, Op: d.Op, Cosine: acc.MinCosine()})
		if so.Progress != nil {
			so.Progress(i+1, len(int8Layers))
		}
	}
	sort.SliceStable(rep.Layers, func(i, j int) bool { return rep.Layers[i].Cosine < rep.Layers[j].Cosine })
	return rep, tailed, nil
}

// replayRunner answers the runs of its batches with the outputs ref gave
// for them once (outputs of kiln's engines never point into an arena, so
// they stay valid), and runs ref for any other input. When keep is set and
// ref is an engine, it also keeps every value the reference computed, so
// that tail can run a layer's part of the graph alone.
type replayRunner struct {
	ref     Runner
	batches []map[string]*tensor.Tensor
	outs    []map[string]*tensor.Tensor
	keep    bool
	vals    []map[string]*tensor.Tensor // by batch, value name
}

// tailMemory bounds the bytes of reference values the sensitivity analysis
// keeps for its per-layer runs; beyond it, each layer runs the whole graph.
const tailMemory = 1 << 30

// observer is an engine that shows the values it computes.
type observer interface {
	RunObserved(ctx context.Context, inputs map[string]*tensor.Tensor, observe engine.Observer) (map[string]*tensor.Tensor, error)
}

func (r *replayRunner) record(ctx context.Context) error {
	r.outs = make([]map[string]*tensor.Tensor, len(r.batches))
	obs, ok := r.ref.(observer)
	if r.keep && ok {
		r.vals = make([]map[string]*tensor.Tensor, len(r.batches))
	}
	var kept int64
	for i, b := range r.batches {
		var o map[string]*tensor.Tensor
		var err error
		if r.vals != nil {
			vals := map[string]*tensor.Tensor{}
			for name, t := range b {
				vals[name] = t
			}
			o, err = obs.RunObserved(ctx, b, func(v *ir.Value, t *tensor.Tensor) {
				if r.vals != nil {
					vals[v.Name] = t.Clone()
					kept += int64(len(t.Data))
				}
			})
			if r.vals != nil {
				r.vals[i] = vals
			}
			if kept > tailMemory {
				r.vals = nil // too much to keep: whole-graph runs
			}
		} else {
			o, err = r.ref.Run(ctx, b)
		}
		if err != nil {
			return fmt.Errorf("%w: %w: reference run, batch %d: %w", ErrCompare, ErrNotMeasurable, i, err)
		}
		r.outs[i] = o
	}
	return nil
}

// Run returns the recorded outputs of a batch given by the same tensors.
func (r *replayRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	if i := r.batch(in); i >= 0 {
		return r.outs[i], nil
	}
	return r.ref.Run(ctx, in)
}

// batch returns the index of the batch given by in's tensors, or -1.
func (r *replayRunner) batch(in map[string]*tensor.Tensor) int {
	for i, b := range r.batches {
		if sameBatch(b, in) {
			return i
		}
	}
	return -1
}

func sameBatch(a, b map[string]*tensor.Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	for k, t := range a {
		if b[k] != t {
			return false
		}
	}
	return true
}

// flat reports whether g has no subgraphs (whose captures tail would not
// see).
func flat(g *ir.Graph) bool {
	n := 0
	g.Walk(func(*ir.Graph, *ir.Node) { n++ })
	return n == len(g.Nodes)
}

// tail returns a runner of the part of g (one layer rewritten) that the
// layer named changes: that node and every node after it that reads what
// it changed, fed the values the reference computed before it; outputs
// the layer cannot change are the reference's. It returns nil when the
// reference's values were not kept or the part cannot be built alone (the
// caller runs the whole graph).
func (r *replayRunner) tail(g *ir.Graph, layer string) Runner {
	if r.vals == nil {
		return nil
	}
	c := g.Clone()
	if err := c.Sort(); err != nil {
		return nil
	}
	changed := map[*ir.Value]bool{}
	var keep []*ir.Node
	for _, n := range c.Nodes {
		down := n.Name == layer
		for _, in := range n.Inputs {
			down = down || in != nil && changed[in]
		}
		if down {
			keep = append(keep, n)
			for _, o := range n.Outputs {
				if o != nil {
					changed[o] = true
				}
			}
		}
	}
	if len(keep) == 0 {
		return nil
	}
	seen := map[*ir.Value]bool{}
	var inputs []*ir.Value
	for _, n := range keep {
		for _, in := range n.Inputs {
			if in == nil || changed[in] || seen[in] {
				continue
			}
			if _, ok := r.vals[0][in.Name]; !ok {
				if in.Const != nil {
					continue // a weight (or an input the batches leave at its default)
				}
				return nil
			}
			seen[in] = true
			in.Producer = nil
			inputs = append(inputs, in)
		}
	}
	var outputs []*ir.Value
	for _, v := range c.Outputs {
		if changed[v] {
			outputs = append(outputs, v)
		}
	}
	c.Nodes, c.Inputs, c.Outputs = keep, inputs, outputs
	e, err := engine.New(c)
	if err != nil {
		return nil
	}
	return &tailRunner{r: r, e: e, inputs: inputs}
}

// tailRunner runs the part of a graph tail built on a batch's recorded
// values, the other outputs being the reference's.
type tailRunner struct {
	r      *replayRunner
	e      *engine.Engine
	inputs []*ir.Value
}

func (t *tailRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	i := t.r.batch(in)
	if i < 0 {
		return nil, fmt.Errorf("%w: not one of the analysis's batches", ErrCompare)
	}
	feed := make(map[string]*tensor.Tensor, len(t.inputs))
	for _, v := range t.inputs {
		feed[v.Name] = t.r.vals[i][v.Name]
	}
	out, err := t.e.Run(ctx, feed)
	if err != nil {
		return nil, err
	}
	for name, o := range t.r.outs[i] {
		if _, ok := out[name]; !ok {
			out[name] = o
		}
	}
	return out, nil
}
