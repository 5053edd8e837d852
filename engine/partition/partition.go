package partition

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/tactic"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/optimize"
	"github.com/kilnai/kiln/tensor"
)

// CPU is the name of the device that runs what the requested one cannot.
const CPU = "cpu"

// ErrClosed is returned by the Run of a program's context after its Close.
var ErrClosed = errors.New("partition: context closed")

// ErrFallback is returned by Compile with Options.Strict when some nodes
// would run on the CPU; the message names them and says why.
var ErrFallback = errors.New("partition: layers would fall back to the CPU")

// Options configure Compile.
type Options struct {
	// Strict refuses any fallback (as TensorRT does): Compile fails with
	// ErrFallback before compiling anything.
	Strict bool
	// CPU is the fingerprint of the CPU that runs the CPU segments. With
	// it and ExecOptions.Tune, each CPU segment's layers that have several
	// implementations are timed at the segment's opt shapes (package
	// tactic, through ExecOptions.TimingCache), as a CPU build times them,
	// and the program reports the choices (CPUTactics), which the builder
	// keeps in the plan's header and a plan's load hands back
	// (ExecOptions.Tactics). nil: CPU segments run their default tactics
	// unless ExecOptions has their choices.
	CPU device.Fingerprint
	// Workspace, when positive, bounds the scratch memory (bytes) of the
	// tactic chosen for each timed CPU layer, as a CPU build's
	// --workspace does (tactic.Options.Workspace). ExecOptions.MemoryLimit
	// is the device's memory and does not apply to the CPU segments.
	Workspace int64
	// Progress, when set, is called as each CPU layer's tactics are timed
	// or found in the timing cache (tactic.Options.Progress).
	Progress func(tactic.Progress)
}

// CPUTacticsBlob names the section (under its SegmentPrefix) in which
// plans written before kiln kept every choice in the header kept a CPU
// segment's: the tactic chosen for each timed layer, a JSON object of node
// name to CPUTactic. Compile still reads it; new plans do not have it.
const CPUTacticsBlob = "cpu.tactics"

// CPUTactic is the choice for one layer of a CPU segment, as its section
// keeps it: the tactic, and its time at the segment's opt shapes (Cached:
// read from the timing cache, not measured in this build).
type CPUTactic struct {
	Tactic string `json:"tactic"`
	NS     int64  `json:"ns,omitempty"`
	Cached bool   `json:"cached,omitempty"`
}

// CPUTactics returns the choices made for the CPU segments of a program
// Compile returned while tuning (Options.CPU), by segment name
// ("segment1", SegmentPrefix without its slash): the tactic of each timed
// layer. nil for a program with no CPU segment timed.
func CPUTactics(p device.Program) map[string]map[string]CPUTactic {
	if pp, ok := p.(*program); ok {
		return pp.cpuTactics
	}
	return nil
}

// segmentTactics are the choices of ts for the nodes of sub.
func segmentTactics(ts []device.Tactic, sub *ir.Graph) []device.Tactic {
	if len(ts) == 0 {
		return nil
	}
	names := make(map[string]bool, len(sub.Nodes))
	for _, n := range sub.Nodes {
		names[n.Name] = true
	}
	var out []device.Tactic
	for _, t := range ts {
		if names[t.Layer] {
			out = append(out, t)
		}
	}
	return out
}

// ParseCPUTactics reads a CPU segment's section (CPUTacticsBlob).
func ParseCPUTactics(b []byte) (map[string]CPUTactic, error) {
	var t map[string]CPUTactic
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, err
	}
	for layer, c := range t {
		if c.Tactic == "" {
			return nil, fmt.Errorf("layer %q has no tactic", layer)
		}
	}
	return t, nil
}

// DataDependent is implemented by executors that run nodes whose outputs'
// shapes depend on the data (NonMaxSuppression's selected boxes), which a
// program compiled for fixed shapes cannot hand to the nodes after them:
// the nodes that read such an output on the device start a new device
// segment, compiled for the shapes each run gives (as after a CPU
// segment), and the output reaches them as a host tensor.
type DataDependent interface {
	DataDependent(n *ir.Node, g *ir.Graph) bool
}

// Fallback is one node the device does not run, and why.
type Fallback struct {
	Node   string // the node's name
	Op     string // its op, "CumSum" or "kiln::FusedConv"
	Reason error  // the device's answer (wraps device.ErrUnsupported)
}

// Segment is a run of nodes on one device.
type Segment struct {
	Device string   // the executor's name, or CPU
	Nodes  []string // the nodes' names, in order (shape computations a device segment repeats included)
	// Inputs and Outputs are the values the segment reads from the graph
	// or earlier segments, and those it hands to later segments or returns.
	Inputs, Outputs []string
}

// Report says where each layer of a graph runs.
type Report struct {
	Device    string // the requested device
	Layers    int    // nodes that run (folded constants left out)
	OnDevice  int    // of those, the ones on Device
	Fallbacks []Fallback
	Segments  []Segment
}

// Summary is one line: "12 of 14 layers on cuda, 2 on the CPU (CumSum x2)".
func (r *Report) Summary() string {
	s := fmt.Sprintf("%d of %d layers on %s, %d on the CPU", r.OnDevice, r.Layers, r.Device, len(r.Fallbacks))
	if len(r.Fallbacks) == 0 {
		return s
	}
	count := map[string]int{}
	var order []string
	for _, f := range r.Fallbacks {
		if count[f.Op] == 0 {
			order = append(order, f.Op)
		}
		count[f.Op]++
	}
	parts := make([]string, len(order))
	for i, op := range order {
		parts[i] = fmt.Sprintf("%s x%d", op, count[op])
	}
	return fmt.Sprintf("%s (%s) in %d segments", s, strings.Join(parts, ", "), len(r.Segments))
}

// Lines describes each fallback, one line each: "node (Op): reason".
func (r *Report) Lines() []string {
	out := make([]string, len(r.Fallbacks))
	for i, f := range r.Fallbacks {
		out[i] = fmt.Sprintf("%s (%s) runs on the CPU: %v", f.Node, f.Op, f.Reason)
	}
	return out
}

// segment is a segment being built: node indices into the graph's nodes.
type segment struct {
	onDevice bool
	home     []int // the nodes assigned to it
	nodes    []int // home plus the shape computations it repeats, in graph order
	inputs   []*ir.Value
	consts   []*ir.Value
	outputs  []*ir.Value
}

// partition is the assignment of a graph's nodes.
type partition struct {
	g      *ir.Graph
	report *Report
	segs   []*segment
}

// Assign decides where each node of g (optimized, types inferred) runs:
// on x when x supports it (every node when x is no device.Supporter), on
// the CPU otherwise. It compiles nothing.
func Assign(g *ir.Graph, x device.Executor) *Report {
	return assign(g, x).report
}

func assign(g *ir.Graph, x device.Executor) *partition {
	sup, _ := x.(device.Supporter)
	dd, _ := x.(DataDependent)
	r := &Report{Device: x.Name()}
	p := &partition{g: g, report: r}
	producer := map[*ir.Value]int{}
	for i, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o != nil {
				producer[o] = i
			}
		}
	}
	// Segments alternate: even ones on the device, odd ones on the CPU. A
	// node goes to the first segment of its kind that comes no earlier
	// than its producers' (and after those of the other kind).
	// A device node whose outputs depend on the data (dynamic) sends the
	// device nodes that read them to the next device segment.
	segOf := make([]int, len(g.Nodes))
	onDev := make([]bool, len(g.Nodes))
	dynamic := make([]bool, len(g.Nodes))
	last := -1
	for i, n := range g.Nodes {
		segOf[i] = -1
		if folded(n) {
			continue
		}
		r.Layers++
		onDev[i] = true
		if err := nonTensor(n); err != nil {
			onDev[i] = false
			r.Fallbacks = append(r.Fallbacks, Fallback{Node: n.Name, Op: opName(n), Reason: err})
		} else if sup != nil {
			if err := sup.Supports(n, g); err != nil {
				onDev[i] = false
				r.Fallbacks = append(r.Fallbacks, Fallback{Node: n.Name, Op: opName(n), Reason: err})
			}
		}
		if onDev[i] {
			r.OnDevice++
			dynamic[i] = dd != nil && dd.DataDependent(n, g)
		}
		kind := 0
		if !onDev[i] {
			kind = 1
		}
		s := 0
		for _, v := range deps(n) {
			j, ok := producer[v]
			if !ok || segOf[j] < 0 {
				continue
			}
			switch {
			case onDev[j] == onDev[i] && dynamic[j]:
				s = max(s, segOf[j]+2)
			case onDev[j] == onDev[i]:
				s = max(s, segOf[j])
			default:
				s = max(s, segOf[j]+1)
			}
		}
		if s%2 != kind {
			s++
		}
		segOf[i] = s
		last = max(last, s)
	}
	byIndex := make([]*segment, last+1)
	for i := range g.Nodes {
		s := segOf[i]
		if s < 0 {
			continue
		}
		if byIndex[s] == nil {
			byIndex[s] = &segment{onDevice: s%2 == 0}
		}
		byIndex[s].home = append(byIndex[s].home, i)
	}
	home := map[int]*segment{}
	for _, s := range byIndex {
		if s != nil {
			p.segs = append(p.segs, s)
			for _, i := range s.home {
				home[i] = s
			}
		}
	}
	outputs := map[*ir.Value]bool{}
	for _, v := range g.Outputs {
		outputs[v] = true
	}
	readBy := map[*ir.Value][]*segment{}
	for _, s := range p.segs {
		s.nodes = append([]int(nil), s.home...)
		if s.onDevice {
			p.repeatShapes(s, producer, sup)
		}
		in := map[int]bool{}
		for _, i := range s.nodes {
			in[i] = true
		}
		seen := map[*ir.Value]bool{}
		for _, i := range s.nodes {
			for _, v := range deps(g.Nodes[i]) {
				if v == nil || seen[v] {
					continue
				}
				if j, ok := producer[v]; ok && in[j] {
					continue
				}
				seen[v] = true
				if v.Const != nil && !isInput(g, v) {
					s.consts = append(s.consts, v)
					continue
				}
				s.inputs = append(s.inputs, v)
				readBy[v] = append(readBy[v], s)
			}
		}
	}
	for _, s := range p.segs {
		for _, i := range s.home {
			for _, o := range g.Nodes[i].Outputs {
				if o == nil || o.Const != nil {
					continue
				}
				if outputs[o] || readByOther(readBy[o], s) {
					s.outputs = append(s.outputs, o)
				}
			}
		}
		seg := Segment{Device: CPU}
		if s.onDevice {
			seg.Device = x.Name()
		}
		for _, i := range s.nodes {
			seg.Nodes = append(seg.Nodes, g.Nodes[i].Name)
		}
		seg.Inputs, seg.Outputs = names(s.inputs), names(s.outputs)
		r.Segments = append(r.Segments, seg)
	}
	// A segment nothing reads from (shape computations that the device
	// segments after it repeat) is left out.
	kept := p.segs[:0]
	segs := r.Segments[:0]
	for i, s := range p.segs {
		if len(s.outputs) > 0 {
			kept = append(kept, s)
			segs = append(segs, r.Segments[i])
		}
	}
	p.segs, r.Segments = kept, segs
	return p
}

// nonTensor refuses a node that reads or writes a sequence or an optional
// value (or holds a subgraph that does), whatever the device says: such a
// value lives on the host only, so the node runs on the CPU, and no
// sequence or optional ever crosses into a device segment.
func nonTensor(n *ir.Node) error {
	if v := n.NonTensorValue(); v != nil {
		return fmt.Errorf("%w: %q is a %v: sequence and optional values run on the CPU", device.ErrUnsupported, v.Name, v.Type)
	}
	return nil
}

// repeatShapes adds to device segment s the computations on shapes that
// produce its inputs in other segments (nodes whose outputs are constants
// or shape values, or that read only constants, shape values and such
// nodes' outputs; see shapeOnly), when the device supports them: a device
// folds those into constants once its input shapes are bound, which it
// cannot do with a shape or a mask that arrives as a tensor.
func (p *partition) repeatShapes(s *segment, producer map[*ir.Value]int, sup device.Supporter) {
	in := map[int]bool{}
	for _, i := range s.nodes {
		in[i] = true
	}
	memo := map[*ir.Node]bool{}
	for changed := true; changed; {
		changed = false
		for _, i := range s.nodes {
			for _, v := range deps(p.g.Nodes[i]) {
				j, ok := producer[v]
				if !ok || in[j] || v.Const != nil {
					continue
				}
				n := p.g.Nodes[j]
				if !p.shapeOnly(n, memo) || nonTensor(n) != nil || (sup != nil && sup.Supports(n, p.g) != nil) {
					continue
				}
				in[j] = true
				s.nodes = append(s.nodes, j)
				changed = true
			}
		}
		sort.Ints(s.nodes)
	}
}

// shapeOnly reports whether n computes only from shapes and constants:
// its outputs are all constants or shape values, or its inputs are
// constants, shape values or outputs of such nodes (never graph inputs,
// whose defaults can be overridden).
func (p *partition) shapeOnly(n *ir.Node, memo map[*ir.Node]bool) bool {
	if ok, seen := memo[n]; seen {
		return ok
	}
	memo[n] = false
	ok := p.decideShapeOnly(n, memo)
	memo[n] = ok
	return ok
}

func (p *partition) decideShapeOnly(n *ir.Node, memo map[*ir.Node]bool) bool {
	if len(n.Outputs) == 0 || len(n.Subgraphs()) > 0 {
		return false
	}
	known := true
	for _, o := range n.Outputs {
		if o != nil && o.Const == nil && o.ShapeValue == nil {
			known = false
		}
	}
	if known {
		return true
	}
	for _, v := range n.Inputs {
		switch {
		case v == nil:
		case isInput(p.g, v):
			return false
		case v.Const != nil || v.ShapeValue != nil:
		case v.Producer == nil || !p.shapeOnly(v.Producer, memo):
			return false
		}
	}
	return true
}

func readByOther(segs []*segment, s *segment) bool {
	for _, o := range segs {
		if o != s {
			return true
		}
	}
	return false
}

func isInput(g *ir.Graph, v *ir.Value) bool {
	for _, in := range g.Inputs {
		if in == v {
			return true
		}
	}
	return false
}

func names(vs []*ir.Value) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

// deps returns the values n reads: its inputs and the values of g its
// subgraphs read.
func deps(n *ir.Node) []*ir.Value {
	out := make([]*ir.Value, 0, len(n.Inputs))
	for _, v := range n.Inputs {
		if v != nil {
			out = append(out, v)
		}
	}
	for _, sg := range n.Subgraphs() {
		for _, v := range sg.OuterValues() {
			if v != nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// folded reports whether every output of n is already a constant (the
// engines skip such nodes).
func folded(n *ir.Node) bool {
	for _, o := range n.Outputs {
		if o != nil && o.Const == nil {
			return false
		}
	}
	return len(n.Outputs) > 0
}

func opName(n *ir.Node) string {
	if n.Domain != "" {
		return n.Domain + "::" + n.OpType
	}
	return n.OpType
}

// SegmentPrefix is the prefix of segment i's sections in the blobs of a
// program of several segments ("segment1/cuda.kernels.sm_90").
func SegmentPrefix(i int) string { return fmt.Sprintf("segment%d/", i) }

// Compile prepares g (optimized, types inferred) to run on x, giving the
// nodes x does not support to the CPU (see Assign), and returns the
// program and where each node runs. When x runs every node in one segment
// (see DataDependent) the program is x's own, compiled from g and o as
// without partitioning. Otherwise each
// device segment is compiled by x as a subgraph (with o, its max and opt
// shapes those the segment's inputs take at o's, its blobs those under
// SegmentPrefix), each CPU segment becomes an engine, and the program runs
// them in order, passing host tensors (float32 for float data, whatever
// the device's precision) between them.
func Compile(g *ir.Graph, x device.Executor, o device.ExecOptions, po Options) (device.Program, *Report, error) {
	if o.Fold == nil {
		o.Fold = foldShapes
	}
	p := assign(g, x)
	r := p.report
	if po.Strict && len(r.Fallbacks) > 0 {
		return nil, r, strictError(r)
	}
	if len(r.Fallbacks) == 0 && len(p.segs) <= 1 {
		prog, err := x.Compile(g, o)
		return prog, r, err
	}
	maxShapes, err := boundShapes(g, o.MaxShapes)
	if err != nil {
		return nil, r, err
	}
	optShapes, err := boundShapes(g, o.OptShapes)
	if err != nil {
		return nil, r, err
	}
	prog := &program{blobs: map[string][]byte{}, inputs: map[string]bool{}}
	for _, v := range g.Inputs {
		prog.inputs[v.Name] = true
	}
	ok := false
	defer func() {
		if !ok {
			prog.Close()
		}
	}()
	for i, s := range p.segs {
		sub := p.subgraph(s)
		rs := &runSegment{device: r.Segments[i].Device, inputs: r.Segments[i].Inputs, outputs: r.Segments[i].Outputs,
			ops: segmentOps(g, r.Segments[i].Nodes)}
		if s.onDevice {
			so := o
			so.MaxShapes, so.OptShapes = segmentShapes(maxShapes, s.inputs), segmentShapes(optShapes, s.inputs)
			so.Tactics = segmentTactics(o.Tactics, sub)
			if o.Blobs != nil {
				so.Blobs = map[string][]byte{}
				for name, b := range o.Blobs {
					if rest, ok := strings.CutPrefix(name, SegmentPrefix(i)); ok {
						so.Blobs[rest] = b
					}
				}
			}
			dp, err := x.Compile(sub, so)
			if err != nil {
				return nil, r, fmt.Errorf("segment %d (%s, %d layers): %w", i, rs.device, len(s.home), err)
			}
			rs.prog = dp
			if bp, ok := dp.(device.BlobProgram); ok {
				for name, b := range bp.Blobs() {
					prog.blobs[SegmentPrefix(i)+name] = b
				}
			}
		} else {
			eo := engine.Options{MaxShapes: segmentShapes(maxShapes, s.inputs)}
			name := SegmentPrefix(i) + CPUTacticsBlob
			if ts := segmentTactics(o.Tactics, sub); len(ts) > 0 { // a plan's header
				eo.Tactics = map[string]string{}
				for _, t := range ts {
					eo.Tactics[t.Layer] = t.Tactic
				}
			} else if b, ok := o.Blobs[name]; ok { // an older plan's section
				t, err := ParseCPUTactics(b)
				if err != nil {
					return nil, r, fmt.Errorf("segment %d (CPU): section %s: %w", i, name, err)
				}
				eo.Tactics = map[string]string{}
				for layer, c := range t {
					eo.Tactics[layer] = c.Tactic
				}
			} else if o.Blobs == nil && o.Tune && po.CPU != nil {
				tactics, err := cpuTactics(sub, segmentShapes(optShapes, s.inputs), po, o.TimingCache)
				if err != nil {
					return nil, r, fmt.Errorf("segment %d (CPU, %d layers): tactics: %w", i, len(s.home), err)
				}
				if len(tactics) > 0 {
					if prog.cpuTactics == nil {
						prog.cpuTactics = map[string]map[string]CPUTactic{}
					}
					prog.cpuTactics[strings.TrimSuffix(SegmentPrefix(i), "/")] = tactics
					eo.Tactics = map[string]string{}
					for layer, c := range tactics {
						eo.Tactics[layer] = c.Tactic
					}
				}
			}
			e, err := engine.NewWithOptions(sub, eo)
			if err != nil {
				return nil, r, fmt.Errorf("segment %d (CPU, %d layers): %w", i, len(s.home), err)
			}
			rs.prog = cpuProgram{e}
		}
		prog.segs = append(prog.segs, rs)
	}
	for _, v := range g.Outputs {
		out := graphOutput{name: v.Name}
		if v.Const != nil {
			out.konst, out.input = v.Const, isInput(g, v)
		}
		prog.outputs = append(prog.outputs, out)
	}
	ok = true
	return prog, r, nil
}

// cpuTactics times the layers of CPU segment sub that have several
// implementations at the segment's opt shapes (the graph's own static
// shapes when there are none; nothing is timed when those are symbolic),
// under the CPU's fingerprint (po.CPU, with po's workspace and progress)
// through the timing cache file cachePath ("" for none), and returns the
// choices by node name.
func cpuTactics(sub *ir.Graph, opt map[string][]int, po Options, cachePath string) (map[string]CPUTactic, error) {
	g := sub.Clone()
	for _, v := range g.Inputs {
		if s, ok := opt[v.Name]; ok {
			v.Type.Shape = ir.KnownShape(s...)
		} else if v.Const == nil && v.Type.IsTensor() && !v.Type.Shape.FullyKnown() {
			return nil, nil // no shape to time at
		}
	}
	var cache *tactic.Cache
	if cachePath != "" {
		c, err := tactic.Open(cachePath)
		if err != nil {
			return nil, err
		}
		cache = c
	}
	choices, err := tactic.Select(context.Background(), g, po.CPU, cache, tactic.Options{Workspace: po.Workspace, Progress: po.Progress})
	if err != nil {
		return nil, err
	}
	if cache != nil && len(choices) > 0 {
		if err := cache.Save(); err != nil {
			return nil, err
		}
	}
	out := make(map[string]CPUTactic, len(choices))
	for name, c := range choices {
		out[name] = CPUTactic{Tactic: c.Tactic, NS: int64(c.Time), Cached: c.Cached}
	}
	return out, nil
}

func strictError(r *Report) error {
	const shown = 10
	var parts []string
	for i, f := range r.Fallbacks {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(r.Fallbacks)-shown))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%s): %v", f.Node, f.Op, f.Reason))
	}
	return fmt.Errorf("%w: %d of %d layers have no %s implementation: %s", ErrFallback, len(r.Fallbacks), r.Layers, r.Device, strings.Join(parts, "; "))
}

// subgraph builds segment s as a graph of its own: a copy of g's nodes in
// s, its inputs as graph inputs, the constants it reads as initializers
// and its outputs as graph outputs.
func (p *partition) subgraph(s *segment) *ir.Graph {
	g := p.g
	c := g.Clone()
	m := map[*ir.Value]*ir.Value{}
	pair := func(a, b []*ir.Value) {
		for i := range a {
			if a[i] != nil {
				m[a[i]] = b[i]
			}
		}
	}
	pair(g.Inputs, c.Inputs)
	pair(g.Initializers, c.Initializers)
	for i, n := range g.Nodes {
		pair(n.Inputs, c.Nodes[i].Inputs)
		pair(n.Outputs, c.Nodes[i].Outputs)
	}
	sub := &ir.Graph{Name: g.Name, Opsets: c.Opsets}
	for _, v := range s.inputs {
		cv := m[v]
		cv.Producer = nil
		sub.Inputs = append(sub.Inputs, cv)
	}
	for _, v := range s.consts {
		cv := m[v]
		cv.Producer = nil
		sub.Initializers = append(sub.Initializers, cv)
	}
	for _, i := range s.nodes {
		sub.Nodes = append(sub.Nodes, c.Nodes[i])
	}
	for _, v := range s.outputs {
		sub.Outputs = append(sub.Outputs, m[v])
	}
	return sub
}

// boundShapes infers the shape of every value of g when its inputs take
// the given shapes (nil when shapes is nil); values whose shape stays
// unknown are left out.
func boundShapes(g *ir.Graph, shapes map[string][]int) (map[*ir.Value][]int, error) {
	if shapes == nil {
		return nil, nil
	}
	c := g.Clone()
	for _, v := range c.Inputs {
		if s, ok := shapes[v.Name]; ok {
			v.Type.Shape = ir.KnownShape(s...)
		}
	}
	for _, n := range c.Nodes {
		for _, o := range n.Outputs {
			if o != nil && o.Const == nil {
				o.Type.Shape, o.ShapeValue = nil, nil
			}
		}
	}
	if _, err := ops.InferGraph(c); err != nil {
		return nil, fmt.Errorf("partition: shapes of the segments: %w", err)
	}
	byName := map[string][]int{}
	for _, n := range c.Nodes {
		for _, o := range n.Outputs {
			if o == nil {
				continue
			}
			if d, ok := o.Type.Shape.Ints(); ok {
				byName[o.Name] = d
			}
		}
	}
	out := map[*ir.Value][]int{}
	for _, v := range g.Inputs {
		if s, ok := shapes[v.Name]; ok {
			out[v] = s
		}
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o == nil {
				continue
			}
			if d, ok := byName[o.Name]; ok {
				out[o] = d
			}
		}
	}
	return out, nil
}

// segmentShapes picks the shapes of a segment's inputs, by name; nil when
// one is unknown (a graph input without a default left out of the
// profile, or a shape inference cannot bound).
func segmentShapes(shapes map[*ir.Value][]int, inputs []*ir.Value) map[string][]int {
	if shapes == nil {
		return nil
	}
	out := map[string][]int{}
	for _, v := range inputs {
		d, ok := shapes[v]
		if !ok {
			if v.Const != nil {
				continue
			}
			return nil
		}
		out[v.Name] = d
	}
	return out
}

// program runs the segments of a partitioned graph in order.
type program struct {
	segs    []*runSegment
	inputs  map[string]bool // the graph's input names
	outputs []graphOutput
	blobs   map[string][]byte
	// cpuTactics are the choices timed for the CPU segments, by segment
	// name (CPUTactics).
	cpuTactics map[string]map[string]CPUTactic
}

type runSegment struct {
	device          string
	prog            device.Program
	inputs, outputs []string
	ops             string // what the segment runs: "NonMaxSuppression x1" or "45 layers"
}

// SegmentTime is one segment's run, as WithSegmentTimer reports it.
type SegmentTime struct {
	Index  int           // the segment's position, from 0
	Device string        // the device that ran it, or CPU
	Ops    string        // what it runs: "NonMaxSuppression x1", or "91 layers"
	Took   time.Duration // wall time of the segment's Run, host copies included
}

type timerKey struct{}

// WithSegmentTimer returns a context under which a partitioned program's
// Run reports each segment's wall time to f (in order, on the calling
// goroutine). Programs that are not partitioned ignore it.
func WithSegmentTimer(ctx context.Context, f func(SegmentTime)) context.Context {
	return context.WithValue(ctx, timerKey{}, f)
}

// segmentOps describes a segment's layers for SegmentTime: the op types of
// a short CPU segment, else the count.
func segmentOps(g *ir.Graph, names []string) string {
	if len(names) > 3 {
		return fmt.Sprintf("%d layers", len(names))
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	count := map[string]int{}
	var order []string
	for _, n := range g.Nodes {
		if !want[n.Name] {
			continue
		}
		op := opName(n)
		if count[op] == 0 {
			order = append(order, op)
		}
		count[op]++
	}
	if len(order) == 0 {
		return fmt.Sprintf("%d layers", len(names))
	}
	parts := make([]string, len(order))
	for i, op := range order {
		parts[i] = fmt.Sprintf("%s x%d", op, count[op])
	}
	return strings.Join(parts, ", ")
}

// graphOutput is an output of the graph: a value of a segment, a graph
// input, or a constant.
type graphOutput struct {
	name  string
	konst *tensor.Tensor // a constant, or an input's default when input
	input bool
}

var (
	_ device.Program     = (*program)(nil)
	_ device.BlobProgram = (*program)(nil)
)

// Run runs the segments in order, each on the graph's inputs and the
// earlier segments' outputs it reads. It is safe for concurrent use (the
// segments' programs are).
func (p *program) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return p.run(ctx, inputs, func(i int) segmentRunner { return p.segs[i].prog })
}

// segmentRunner runs one segment: its program, or a context of it.
type segmentRunner interface {
	Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error)
}

// run is Run with segment i run by runner(i).
func (p *program) run(ctx context.Context, inputs map[string]*tensor.Tensor, runner func(i int) segmentRunner) (map[string]*tensor.Tensor, error) {
	vals := make(map[string]*tensor.Tensor, len(inputs))
	for name, t := range inputs {
		if !p.inputs[name] {
			return nil, fmt.Errorf("%w: the model has no input %q", engine.ErrInput, name)
		}
		vals[name] = t
	}
	timer, _ := ctx.Value(timerKey{}).(func(SegmentTime))
	for i, s := range p.segs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		in := make(map[string]*tensor.Tensor, len(s.inputs))
		for _, name := range s.inputs {
			if t, ok := vals[name]; ok {
				in[name] = t
			}
		}
		t0 := time.Now()
		out, err := runner(i).Run(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("segment %d (%s): %w", i, s.device, err)
		}
		if timer != nil {
			timer(SegmentTime{Index: i, Device: s.device, Ops: s.ops, Took: time.Since(t0)})
		}
		for _, name := range s.outputs {
			t, ok := out[name]
			if !ok {
				return nil, fmt.Errorf("partition: segment %d (%s) returned no %q", i, s.device, name)
			}
			vals[name] = t
		}
	}
	res := make(map[string]*tensor.Tensor, len(p.outputs))
	for _, o := range p.outputs {
		t, ok := vals[o.name]
		if o.konst != nil && (!o.input || !ok) {
			res[o.name] = o.konst.Clone()
			continue
		}
		if !ok {
			return nil, fmt.Errorf("%w: input %q (a graph output) is missing", engine.ErrInput, o.name)
		}
		res[o.name] = t
	}
	return res, nil
}

// Close closes every segment's program.
func (p *program) Close() error {
	var errs []error
	for _, s := range p.segs {
		if s.prog != nil {
			errs = append(errs, s.prog.Close())
		}
	}
	return errors.Join(errs...)
}

// Blobs returns the device segments' sections, each under its segment's
// prefix (SegmentPrefix).
func (p *program) Blobs() map[string][]byte { return p.blobs }

// Segments returns the number of segments the program runs.
func (p *program) Segments() int { return len(p.segs) }

// cpuProgram runs a CPU segment's engine.
type cpuProgram struct{ e *engine.Engine }

func (c cpuProgram) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return c.e.Run(ctx, inputs)
}

func (cpuProgram) Close() error { return nil }

// NewContext returns a context of the CPU segment's engine, with its own
// arena.
func (c cpuProgram) NewContext() (device.ProgramContext, error) {
	return cpuContext{c.e.NewContext()}, nil
}

// cpuContext is an engine.Context as a device.ProgramContext.
type cpuContext struct{ c *engine.Context }

func (c cpuContext) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return c.c.Run(ctx, inputs)
}

func (c cpuContext) ArenaBytes() int64 { return int64(c.c.ArenaBytes()) }
func (cpuContext) Close() error        { return nil }

// SetOutputs is engine.Context.SetOutputs (device.OutputsInto).
func (c cpuContext) SetOutputs(bufs map[string][]byte) { c.c.SetOutputs(bufs) }

// sharedContext runs a segment whose program gives out no contexts: every
// context shares the program.
type sharedContext struct{ p device.Program }

func (c sharedContext) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return c.p.Run(ctx, inputs)
}

func (sharedContext) ArenaBytes() int64 { return 0 }
func (sharedContext) Close() error      { return nil }

var (
	_ device.Contexts       = (*program)(nil)
	_ device.ProgramContext = (*programContext)(nil)
)

// NewContext returns an execution context of the partitioned program
// (device.Contexts): a context of each segment's program where it gives
// them out (a device segment's own stream, a CPU segment's arena), the
// program itself where it does not. The segments run one after another,
// so the device segments' contexts share one device arena where they can
// (device.SharedArena: each takes the first earlier one that accepts).
func (p *program) NewContext() (device.ProgramContext, error) {
	pc := &programContext{p: p, segs: make([]device.ProgramContext, len(p.segs))}
	for i, s := range p.segs {
		var c device.ProgramContext = sharedContext{s.prog}
		if cs, ok := s.prog.(device.Contexts); ok {
			var err error
			if c, err = cs.NewContext(); err != nil {
				pc.Close()
				return nil, fmt.Errorf("segment %d (%s): %w", i, s.device, err)
			}
		}
		pc.segs[i] = c
	}
	shareArenas(pc.segs)
	return pc, nil
}

// shareArenas makes each context of segs that can share its device arena
// (device.SharedArena) share the first earlier one's that accepts.
func shareArenas(segs []device.ProgramContext) {
	var with []device.ProgramContext
	for _, c := range segs {
		s, ok := c.(device.SharedArena)
		if !ok {
			continue
		}
		shared := false
		for _, w := range with {
			if shared = s.ShareArena(w); shared {
				break
			}
		}
		if !shared {
			with = append(with, c)
		}
	}
}

// programContext is a context of a partitioned program: one per segment,
// the CPU segments' activations in one host arena (hostarena.go).
type programContext struct {
	p      *program
	segs   []device.ProgramContext
	host   hostArena
	closed bool
}

// Run is program.Run with each segment run in its context.
func (c *programContext) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	if c.closed {
		return nil, ErrClosed
	}
	out, err := c.p.run(ctx, inputs, func(i int) segmentRunner { return c.host.runner(c, i) })
	c.host.replan(c)
	return out, err
}

// ArenaBytes sums the segments' contexts' memory, the CPU segments' host
// arena once.
func (c *programContext) ArenaBytes() int64 { return c.host.bytes(c.segs) }

// Close closes the segments' contexts.
func (c *programContext) Close() error {
	var errs []error
	for _, s := range c.segs {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	c.segs, c.host, c.closed = nil, hostArena{}, true
	return errors.Join(errs...)
}

// foldShapes is the devices' ExecOptions.Fold: the optimizer's
// eliminations and constant folding (level 1), which turn the shape
// arithmetic of a graph given concrete input shapes into constants.
func foldShapes(g *ir.Graph) error { return optimize.Run(g, 1, nil) }
