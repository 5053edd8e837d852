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
	if len(batches) == 0 {
		return nil, fmt.Errorf("%w: no batches", ErrCompare)
	}
	var ref Runner = so.Ref
	if ref == nil {
		e, err := engine.New(g)
		if err != nil {
			return nil, err
		}
		ref = e
	}
	saved := saveGraph(g)
	defer saved.restore(g)
	all, err := QuantizeINT8(g, t, opt)
	saved.restore(g)
	if err != nil {
		return nil, err
	}
	var int8Layers []LayerDecision
	for _, d := range all.Layers {
		if d.Precision == PrecisionINT8 {
			int8Layers = append(int8Layers, d)
		}
	}
	rep := &SensitivityReport{}
	if len(int8Layers) == 0 {
		return rep, nil
	}
	// the graph was checked against the table above: the rewrites of one
	// layer each need not hash it again
	checked := *t
	checked.Graph = ""
	cached := &replayRunner{ref: ref, batches: batches}
	if err := cached.record(ctx); err != nil {
		return nil, err
	}
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
			return nil, fmt.Errorf("layer %q: %w", d.Name, err)
		}
		qe, err := engine.New(g)
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", d.Name, err)
		}
		acc, err := Compare(ctx, cached, qe, batches)
		saved.restore(g) // after the run: the engine reads g's nodes
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", d.Name, err)
		}
		rep.Layers = append(rep.Layers, LayerSensitivity{Name: d.Name, Op: d.Op, Cosine: acc.MinCosine()})
		if so.Progress != nil {
			so.Progress(i+1, len(int8Layers))
		}
	}
	sort.SliceStable(rep.Layers, func(i, j int) bool { return rep.Layers[i].Cosine < rep.Layers[j].Cosine })
	return rep, nil
}

// replayRunner answers the runs of its batches with the outputs ref gave
// for them once (outputs of kiln's engines never point into an arena, so
// they stay valid), and runs ref for any other input.
type replayRunner struct {
	ref     Runner
	batches []map[string]*tensor.Tensor
	outs    []map[string]*tensor.Tensor
}

func (r *replayRunner) record(ctx context.Context) error {
	r.outs = make([]map[string]*tensor.Tensor, len(r.batches))
	for i, b := range r.batches {
		o, err := r.ref.Run(ctx, b)
		if err != nil {
			return fmt.Errorf("%w: %w: reference run, batch %d: %w", ErrCompare, ErrNotMeasurable, i, err)
		}
		r.outs[i] = o
	}
	return nil
}

// Run returns the recorded outputs of a batch given by the same tensors.
func (r *replayRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	for i, b := range r.batches {
		if sameBatch(b, in) {
			return r.outs[i], nil
		}
	}
	return r.ref.Run(ctx, in)
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
