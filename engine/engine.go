package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	cpukernels "github.com/kilnai/kiln/device/cpu/kernels"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

var (
	// ErrInput is returned when the inputs given to Run do not fit the model:
	// a missing or unknown name, a wrong data type or shape.
	ErrInput = errors.New("engine: bad input")
	// ErrKernel is returned when a kernel fails while running.
	ErrKernel = errors.New("engine: kernel failed")
)

// Engine runs one graph. Build it with New or NewWithOptions. It is
// immutable once built: weights, kernels, profiles and the memory plan are
// shared by all its execution contexts (see NewContext).
type Engine struct {
	graph    *ir.Graph
	plans    map[*ir.Graph]*plan
	profiles []Profile
	mem      *memPlan      // planned at the max shapes; nil: no arena
	idle     chan *Context // contexts Run and RunObserved reuse
	limit    int64         // memory limit of one context (math.MaxInt64: none)

	// planShapes are the shapes mem was planned at (nil: the declared
	// ones), memKey their bucket key (see bucket.go); buckets holds the
	// memory plans of smaller shapes, planned on first use.
	planShapes map[string][]int
	memKey     string
	dynamic    bool // no plan at build time: plan per run's shapes
	bucketMu   sync.Mutex
	buckets    map[string]*memPlan
	// runMu is held shared by every run and exclusively while a bucket
	// is planned: planning calls the kernels' Infer, which some kernels
	// (the float16 adapter) use to set state their Run reads.
	runMu sync.RWMutex
}

// plan is a graph ready to execute: kernels in topological order and, for
// every value, the index of the last step that reads it.
type plan struct {
	g       *ir.Graph
	steps   []step
	lastUse map[*ir.Value]int
	keep    map[*ir.Value]bool // graph outputs: never freed
}

type step struct {
	node   *ir.Node
	kernel ops.Kernel
	// impl names the kernel: a fast kernel of the CPU registry
	// (device/cpu/kernels) or kernels.Reference, the op's own.
	impl string
}

// New validates g, infers its shapes and prepares its kernels (and those of
// every subgraph): NewWithOptions with the zero Options.
func New(g *ir.Graph) (*Engine, error) {
	return NewWithOptions(g, Options{})
}

// prepare infers g's types and prepares its kernels through the CPU
// registry (kernels.Prepare: a fast kernel where one supports the node,
// else the op's reference kernel), the one place the CPU engine chooses
// a node's kernel.
func (e *Engine) prepare(g *ir.Graph) error {
	impls := map[*ir.Node]string{}
	kernels, err := ops.InferGraphWith(g, func(n *ir.Node, opset int64) (ops.Kernel, error) {
		k, name, err := cpukernels.Prepare(n, opset)
		impls[n] = name
		return k, err
	})
	if err != nil {
		return err
	}
	p := &plan{g: g, lastUse: map[*ir.Value]int{}, keep: map[*ir.Value]bool{}}
	for _, v := range g.Outputs {
		p.keep[v] = true
	}
	for _, n := range g.Nodes {
		if folded(n) {
			continue // every output is a constant computed at load time
		}
		for _, sg := range n.Subgraphs() {
			if err := e.prepare(sg); err != nil {
				return fmt.Errorf("subgraph of node %q (%s): %w", n.Name, n.OpType, err)
			}
		}
		i := len(p.steps)
		p.steps = append(p.steps, step{node: n, kernel: kernels[n], impl: impls[n]})
		for _, v := range n.Inputs {
			if v != nil {
				p.lastUse[v] = i
			}
		}
		for _, sg := range n.Subgraphs() {
			for _, v := range sg.OuterValues() {
				p.lastUse[v] = i
			}
		}
	}
	e.plans[g] = p
	return nil
}

func folded(n *ir.Node) bool {
	if len(n.Subgraphs()) > 0 || len(n.Outputs) == 0 {
		return false
	}
	for _, o := range n.Outputs {
		if o != nil && o.Const == nil {
			return false
		}
	}
	return true
}

// Kernels returns, by node name, the kernel that runs each node of the
// top-level graph: a fast kernel of the CPU registry by its name
// (device/cpu/kernels), or "reference" for the op's own kernel. Nodes
// computed at load time (constants) are not listed.
func (e *Engine) Kernels() map[string]string {
	m := map[string]string{}
	if p := e.plans[e.graph]; p != nil {
		for _, s := range p.steps {
			m[s.node.Name] = s.impl
		}
	}
	return m
}

// Graph returns the engine's graph (with inferred types). Callers must not
// modify it.
func (e *Engine) Graph() *ir.Graph { return e.graph }

// Inputs returns the graph inputs a caller must provide: those without a
// default value (initializer).
func (e *Engine) Inputs() []*ir.Value {
	var in []*ir.Value
	for _, v := range e.graph.Inputs {
		if v.Const == nil {
			in = append(in, v)
		}
	}
	return in
}

// Outputs returns the graph outputs in order.
func (e *Engine) Outputs() []*ir.Value { return e.graph.Outputs }

// frame holds the live values of one graph execution.
type frame struct {
	vals   map[*ir.Value]*tensor.Tensor
	parent *frame
}

func (f *frame) lookup(v *ir.Value) (*tensor.Tensor, bool) {
	for x := f; x != nil; x = x.parent {
		if t, ok := x.vals[v]; ok {
			return t, true
		}
		if v.Const != nil {
			return v.Const, true
		}
		if v.Outer == nil {
			return nil, false
		}
		v = v.Outer
	}
	return nil, false
}

// Run executes the graph on the named inputs and returns the outputs by name.
// Inputs with a default value may be left out. Run checks types and shapes
// (including that a symbolic dimension has one size across all inputs, and
// that the inputs fit one of the engine's profiles) and stops early when
// ctx is done. Run is safe for concurrent use: each call runs on an idle
// execution context of the engine, or a new one.
func (e *Engine) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return e.RunObserved(ctx, inputs, nil)
}

// Observer is called by RunObserved with every value of the top-level graph
// that a node computes, right after the node ran. It must not modify or keep
// t beyond the call (copy what it needs).
type Observer func(v *ir.Value, t *tensor.Tensor)

// RunObserved is Run that also shows every intermediate value of the
// top-level graph to observe (when not nil): calibration collects activation
// ranges with it and the accuracy report compares layers.
func (e *Engine) RunObserved(ctx context.Context, inputs map[string]*tensor.Tensor, observe Observer) (map[string]*tensor.Tensor, error) {
	var c *Context
	select {
	case c = <-e.idle:
	default:
		c = e.NewContext()
	}
	defer func() {
		select {
		case e.idle <- c:
		default: // enough idle contexts (and arenas) kept already
		}
	}()
	return c.RunObserved(ctx, inputs, observe)
}

// bindInputs checks the inputs against the graph and returns the frame of
// a run with them bound: f when not nil (cleared first), else a new one.
// syms, when not nil, is cleared and used to match symbolic dimensions.
func (e *Engine) bindInputs(f *frame, syms map[string]symBinding, inputs map[string]*tensor.Tensor) (*frame, error) {
	g := e.graph
	if f == nil {
		f = &frame{vals: make(map[*ir.Value]*tensor.Tensor, len(g.Nodes))}
	} else {
		clear(f.vals)
	}
	if syms == nil {
		syms = map[string]symBinding{}
	} else {
		clear(syms)
	}
	bound := 0
	for _, v := range g.Inputs {
		t, ok := inputs[v.Name]
		if ok {
			bound++
		}
		if !ok || t == nil {
			if v.Const != nil {
				continue
			}
			if err := e.unknownInputs(inputs); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: input %q (%v) is missing", ErrInput, v.Name, v.Type)
		}
		if err := checkInput(v, t, syms); err != nil {
			if uerr := e.unknownInputs(inputs); uerr != nil {
				return nil, uerr
			}
			return nil, err
		}
		f.vals[v] = t
	}
	if bound != len(inputs) {
		if err := e.unknownInputs(inputs); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// unknownInputs returns the error for an input name the graph does not
// have (nil when all are known).
func (e *Engine) unknownInputs(inputs map[string]*tensor.Tensor) error {
	for name := range inputs {
		known := false
		for _, v := range e.graph.Inputs {
			if v.Name == name {
				known = true
				break
			}
		}
		if !known {
			return fmt.Errorf("%w: the model has no input %q (inputs: %s)", ErrInput, name, inputNames(e.Inputs()))
		}
	}
	return nil
}

func inputNames(vs []*ir.Value) string {
	s := ""
	for i, v := range vs {
		if i > 0 {
			s += ", "
		}
		s += v.Name
	}
	return s
}

type symBinding struct {
	size  int
	input string
}

func checkInput(v *ir.Value, t *tensor.Tensor, syms map[string]symBinding) error {
	if !v.Type.IsTensor() || t.IsSequence() || t.IsNone() {
		return checkValue(v.Name, v.Type, t, syms)
	}
	if v.Type.DType != tensor.Undefined && t.DType != v.Type.DType {
		return fmt.Errorf("%w: input %q has type %v, want %v", ErrInput, v.Name, t.DType, v.Type.DType)
	}
	if t.DType == tensor.String {
		if len(t.Strings) != t.Len() {
			return fmt.Errorf("%w: input %q has %d strings for shape %v", ErrInput, v.Name, len(t.Strings), t.Shape)
		}
	} else if err := tensor.CheckShape(t.Shape); err != nil || len(t.Data) != t.Len()*t.DType.Size() {
		return fmt.Errorf("%w: input %q: %d bytes do not fit shape %v", ErrInput, v.Name, len(t.Data), t.Shape)
	}
	s := v.Type.Shape
	if s == nil {
		return nil
	}
	if len(s) != len(t.Shape) {
		return fmt.Errorf("%w: input %q has shape %v, want rank %d %v", ErrInput, v.Name, tensor.ShapeString(t.Shape), len(s), s)
	}
	for i, d := range s {
		got := t.Shape[i]
		switch {
		case d.Known() && int(d.Val) != got:
			return fmt.Errorf("%w: input %q dimension %d is %d, want %d (shape %v)", ErrInput, v.Name, i, got, d.Val, s)
		case d.Symbolic():
			if b, ok := syms[d.Sym]; ok && b.size != got {
				return fmt.Errorf("%w: input %q dimension %d (%s) is %d, but %s is %d in input %q", ErrInput, v.Name, i, d.Sym, got, d.Sym, b.size, b.input)
			}
			syms[d.Sym] = symBinding{size: got, input: v.Name}
		}
	}
	return nil
}

// checkValue checks a sequence or optional input t against its declared
// type want (a tensor inside is checked for its element type only).
func checkValue(name string, want ir.Type, t *tensor.Tensor, syms map[string]symBinding) error {
	switch {
	case want.DType == tensor.Undefined:
		return nil
	case want.IsTensor() && !t.IsSequence() && !t.IsNone():
		return checkInput(&ir.Value{Name: name, Type: want}, t, syms)
	case want.DType == tensor.Optional:
		if t.IsNone() || want.Elem == nil {
			return nil
		}
		return checkValue(name, *want.Elem, t, syms)
	case t.IsNone():
		return fmt.Errorf("%w: input %q is an empty optional, want %v", ErrInput, name, want)
	case want.DType == tensor.Sequence:
		if !t.IsSequence() {
			return fmt.Errorf("%w: input %q is %s, want %v", ErrInput, name, valueKind(t), want)
		}
		for i, e := range t.Elems {
			if e == nil || e.IsSequence() || e.IsNone() {
				return fmt.Errorf("%w: input %q element %d is not a tensor", ErrInput, name, i)
			}
			if want.Elem != nil && want.Elem.DType != tensor.Undefined && e.DType != want.Elem.DType {
				return fmt.Errorf("%w: input %q element %d has type %v, want %v", ErrInput, name, i, e.DType, want)
			}
			if err := tensor.CheckShape(e.Shape); err != nil || (e.DType != tensor.String && len(e.Data) != e.Len()*e.DType.Size()) || (e.DType == tensor.String && len(e.Strings) != e.Len()) {
				return fmt.Errorf("%w: input %q element %d: its data does not fit shape %v", ErrInput, name, i, e.Shape)
			}
		}
		return nil
	}
	return fmt.Errorf("%w: input %q is %s, want %v", ErrInput, name, valueKind(t), want)
}

func valueKind(t *tensor.Tensor) string {
	switch {
	case t.IsSequence():
		return "a sequence"
	case t.IsNone():
		return "an empty optional"
	}
	return "a " + t.DType.String() + " tensor"
}

// exec runs plan p in frame f (inputs already bound) and returns the graph
// outputs in order. With run (only for the top-level plan of an engine
// with a memory plan) kernel outputs go to run's arena. With c (only for
// the top-level plan) the run's scratch (env, arguments, result) is c's,
// reused run after run; the result is then valid until c's next run.
func (e *Engine) exec(ctx context.Context, p *plan, f *frame, observe Observer, run, c *Context) ([]*tensor.Tensor, error) {
	var env *ops.Env
	var args []*tensor.Tensor
	if c != nil {
		c.ctx, c.frame = ctx, f
		env = &c.env
		*env = ops.Env{Ctx: ctx, Alloc: c.eAlloc, RunGraph: c.runGraph}
		args = c.args[:0]
		defer func() {
			clear(args[:cap(args)])
			c.ctx, c.frame, c.args = nil, nil, args[:0]
		}()
	} else {
		env = &ops.Env{Ctx: ctx, Alloc: e.allocate}
		env.RunGraph = func(sg *ir.Graph, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
			return e.runSubgraph(ctx, f, sg, in)
		}
		args = make([]*tensor.Tensor, 0, 8)
	}
	for i, s := range p.steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		args = args[:0]
		for _, v := range s.node.Inputs {
			if v == nil {
				args = append(args, nil)
				continue
			}
			t, ok := f.lookup(v)
			if !ok {
				return nil, fmt.Errorf("%w: node %q (%s): input %q has no value", ErrKernel, s.node.Name, s.node.OpType, v.Name)
			}
			args = append(args, t)
		}
		if run != nil {
			run.beginStep(env, i)
		}
		outs, err := runKernel(s, env, args)
		if err != nil {
			return nil, err
		}
		for j, o := range s.node.Outputs {
			if o == nil {
				continue
			}
			if j >= len(outs) || outs[j] == nil {
				return nil, fmt.Errorf("%w: node %q (%s) did not produce output %d (%q)", ErrKernel, s.node.Name, s.node.OpType, j, o.Name)
			}
			if run != nil {
				if outs[j], err = run.guard(i, j, s.node, outs[j]); err != nil {
					return nil, err
				}
			}
			f.vals[o] = outs[j]
			if observe != nil {
				observe(o, outs[j])
			}
		}
		for _, v := range s.node.Inputs {
			if v != nil && p.lastUse[v] == i && !p.keep[v] {
				delete(f.vals, v)
			}
		}
	}
	var res []*tensor.Tensor
	if c != nil && cap(c.res) >= len(p.g.Outputs) {
		res = c.res[:len(p.g.Outputs)]
	} else {
		res = make([]*tensor.Tensor, len(p.g.Outputs))
		if c != nil {
			c.res = res
		}
	}
	for i, v := range p.g.Outputs {
		t, ok := f.lookup(v)
		if !ok {
			return nil, fmt.Errorf("%w: output %q was not computed", ErrKernel, v.Name)
		}
		res[i] = t
	}
	return res, nil
}

// runSubgraph runs subgraph sg of a node executing in frame f (Env.RunGraph).
func (e *Engine) runSubgraph(ctx context.Context, f *frame, sg *ir.Graph, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	sp := e.plans[sg]
	if sp == nil {
		return nil, fmt.Errorf("%w: subgraph %q was not prepared", ErrKernel, sg.Name)
	}
	if len(in) > len(sg.Inputs) {
		return nil, fmt.Errorf("%w: subgraph %q takes %d inputs, got %d", ErrKernel, sg.Name, len(sg.Inputs), len(in))
	}
	sf := &frame{vals: make(map[*ir.Value]*tensor.Tensor, len(sg.Nodes)), parent: f}
	for i, t := range in {
		if t != nil {
			sf.vals[sg.Inputs[i]] = t
		}
	}
	return e.exec(ctx, sp, sf, nil, nil, nil)
}

// runKernel runs one step, turning a kernel panic (a bug) into an error so
// that one bad request cannot bring a server down.
func runKernel(s step, env *ops.Env, args []*tensor.Tensor) (outs []*tensor.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: node %q (%s) panicked: %v\n%s", ErrKernel, s.node.Name, s.node.OpType, r, debug.Stack())
		}
	}()
	outs, err = s.kernel.Run(env, args)
	if err != nil {
		return nil, fmt.Errorf("%w: node %q (%s): %w", ErrKernel, s.node.Name, s.node.OpType, err)
	}
	return outs, nil
}
