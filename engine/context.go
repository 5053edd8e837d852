package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// ErrContextBusy is returned when Run is called on a Context that is
// already running: a Context serves one goroutine at a time.
var ErrContextBusy = errors.New("engine: context already running")

// errAlias is returned, only while strictAlias is set (in tests), when a
// kernel returns an output pointing into arena memory the plan did not give
// it: a view the memory planner does not know about. Otherwise such an
// output is copied out of the arena and the run goes on. (Unexported: no
// user can trigger it.)
var errAlias = errors.New("engine: output aliases arena memory it does not own")

// strictAlias makes an unplanned alias of arena memory an error instead of
// a copy (tests set it to catch aliasing kernels the planner misses).
var strictAlias atomic.Bool

// Context holds the state of one inference at a time on an Engine: the
// arena the engine's intermediates live in. Many contexts may run one
// engine concurrently; one context serves one goroutine at a time.
type Context struct {
	e     *Engine
	arena []byte
	busy  atomic.Bool

	// the memory plan of the current run (planned for the bucket of its
	// input shapes) and the input shapes of the last run, which chose it
	mem        *memPlan
	lastShapes [][]int
	lastOK     bool

	// per step: the planned slots of the running node's outputs and how
	// many of them the kernel has asked for
	cur    []slot
	nalloc int
	step   int
	alloc  func(dt tensor.DType, shape []int) (*tensor.Tensor, error)

	// the scratch of a run, reused by the next: the frame of the
	// top-level graph, the symbolic sizes of the inputs, the kernels'
	// Env, the arguments of a step, the outputs, and per step the
	// headers of the tensors allocate hands out in the arena (a value's
	// header lives until the next run, like its memory)
	f        frame
	syms     map[string]symBinding
	env      ops.Env
	ctx      context.Context
	frame    *frame
	args     []*tensor.Tensor
	res      []*tensor.Tensor
	runGraph func(g *ir.Graph, in []*tensor.Tensor) ([]*tensor.Tensor, error)
	eAlloc   func(dt tensor.DType, shape []int) (*tensor.Tensor, error) // e.allocate
	hdrs     [][]shapedTensor

	// into is where graph outputs go (SetOutputs, memplan.go)
	into *outputsInto
}

// NewContext returns a new execution context for e. Its arena is allocated
// on the first Run, sized for the shapes run (rounded up to a bucket, see
// ArenaBytes), and reused by every later one; it grows when a run needs
// more (for inputs within the max shapes, never beyond the size planned
// for them).
func (e *Engine) NewContext() *Context {
	c := &Context{e: e}
	c.alloc = c.allocate
	c.runGraph = c.runSubgraph
	c.eAlloc = e.allocate
	c.f.vals = make(map[*ir.Value]*tensor.Tensor, len(e.graph.Nodes))
	c.syms = map[string]symBinding{}
	c.args = make([]*tensor.Tensor, 0, 8)
	return c
}

// runSubgraph is the Env.RunGraph of a top-level node run by c.
func (c *Context) runSubgraph(g *ir.Graph, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	return c.e.runSubgraph(c.ctx, c.frame, g, in)
}

// Engine returns the engine c runs.
func (c *Context) Engine() *Engine { return c.e }

// Run executes the engine's graph on the named inputs, like Engine.Run,
// with c's arena holding the intermediates. The outputs never point into
// the arena: they stay valid after later runs.
func (c *Context) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return c.RunObserved(ctx, inputs, nil)
}

// RunObserved is Run that also shows every intermediate value of the
// top-level graph to observe (see Engine.RunObserved). The tensors observe
// sees may live in the arena: they are overwritten by later steps.
func (c *Context) RunObserved(ctx context.Context, inputs map[string]*tensor.Tensor, observe Observer) (map[string]*tensor.Tensor, error) {
	if !c.busy.CompareAndSwap(false, true) {
		return nil, ErrContextBusy
	}
	defer c.busy.Store(false)
	e := c.e
	if len(e.profiles) > 0 {
		if _, err := CheckProfiles(e.profiles, inputs); err != nil {
			return nil, err
		}
	}
	f, err := e.bindInputs(&c.f, c.syms, inputs)
	if err != nil {
		return nil, err
	}
	var run *Context
	if e.mem != nil || e.dynamic {
		mp, err := c.planFor(inputs)
		if err != nil {
			return nil, err
		}
		c.mem = mp
		if mp != nil {
			if len(c.arena) < mp.arenaBytes {
				c.arena = nil // the old arena may go before the new one is made
				c.arena = tensor.AlignedBytes(mp.arenaBytes)
			}
			run = c
		}
	}
	if run == nil && c.into != nil {
		c.mem, run = c.into.plan, c // no arena, but outputs go where SetOutputs says
	}
	outs, err := func() ([]*tensor.Tensor, error) {
		e.runMu.RLock()
		defer e.runMu.RUnlock()
		return e.exec(ctx, e.plans[e.graph], f, observe, run, c)
	}()
	// what the run bound stays reachable from c no longer than the run
	defer clear(f.vals)
	if err != nil {
		return nil, err
	}
	defer clear(outs)
	res := make(map[string]*tensor.Tensor, len(outs))
	for i, v := range e.graph.Outputs {
		t := outs[i]
		if run != nil && run.inArena(t) {
			t = t.Clone()
		}
		res[v.Name] = t
	}
	return res, nil
}

// ArenaBytes returns the size of c's arena: 0 before the first run (or
// with Options.NoArena), then the size planned for the largest shapes c
// has run, rounded up per symbolic dimension to a power of two (at most
// the max shape; exactly the run's shapes without max shapes): a context
// that serves batches of 1 holds an arena for batch 1 whatever the
// profile's max batch.
func (c *Context) ArenaBytes() int { return len(c.arena) }

// allocate is Env.Alloc while a node of the top-level graph runs: output
// number c.nalloc of the node gets its planned slot when the request fits
// it (same type, no more bytes); anything else is a fresh allocation,
// within the engine's memory limit.
func (c *Context) allocate(dt tensor.DType, shape []int) (*tensor.Tensor, error) {
	j := c.nalloc
	c.nalloc++
	if j < len(c.cur) {
		s := c.cur[j]
		if s.size > 0 && s.dt == dt && tensor.CheckShape(shape) == nil {
			if n := tensor.NumElements(shape) * dt.Size(); n <= s.size {
				return c.arenaTensor(j, dt, shape, c.arena[s.off:s.off+n:s.off+n]), nil
			}
		}
	}
	if t := c.intoOutput(j, dt, shape); t != nil {
		return t, nil
	}
	return c.e.allocate(dt, shape)
}

// shapedTensor is a tensor with room for its shape, so that a tensor in
// the arena costs one allocation, not two (a run of a small model makes a
// few per layer). Rank 5 fits: the blocked (NCHWc) activations.
type shapedTensor struct {
	t    tensor.Tensor
	dims [5]int
}

// arenaTensor is arenaTensor for output j of the running step, in a header
// of c's that the same output of the same step reuses next run (the value
// is dead by then: the run's outputs in the arena are cloned, observers and
// kernels keep no tensor beyond the run).
func (c *Context) arenaTensor(j int, dt tensor.DType, shape []int, data []byte) *tensor.Tensor {
	if len(shape) == 0 || len(shape) > len(shapedTensor{}.dims) {
		return arenaTensor(dt, shape, data)
	}
	if c.step >= len(c.hdrs) {
		c.hdrs = append(c.hdrs, make([][]shapedTensor, c.step+1-len(c.hdrs))...)
	}
	h := c.hdrs[c.step]
	if j >= len(h) {
		h = append(h, make([]shapedTensor, j+1-len(h))...)
		c.hdrs[c.step] = h
	}
	st := &h[j]
	st.t = tensor.Tensor{DType: dt, Shape: append(st.dims[:0:len(shape)], shape...), Data: data}
	return &st.t
}

// arenaTensor returns a tensor of dt and a copy of shape over data.
func arenaTensor(dt tensor.DType, shape []int, data []byte) *tensor.Tensor {
	if len(shape) == 0 || len(shape) > len(shapedTensor{}.dims) {
		return &tensor.Tensor{DType: dt, Shape: append([]int(nil), shape...), Data: data}
	}
	st := &shapedTensor{}
	st.t = tensor.Tensor{DType: dt, Shape: append(st.dims[:0:len(shape)], shape...), Data: data}
	return &st.t
}

// arenaSpan returns the byte range of t's data relative to the arena, and
// whether it overlaps the arena at all.
func (c *Context) arenaSpan(t *tensor.Tensor) (span, bool) {
	if t == nil || len(t.Data) == 0 || len(c.arena) == 0 {
		return span{}, false
	}
	base := uintptr(unsafe.Pointer(&c.arena[0]))
	p := uintptr(unsafe.Pointer(&t.Data[0]))
	end := p + uintptr(len(t.Data))
	if end <= base || p >= base+uintptr(len(c.arena)) {
		return span{}, false
	}
	return span{int(p - base), int(end - base)}, true
}

func (c *Context) inArena(t *tensor.Tensor) bool {
	_, ok := c.arenaSpan(t)
	return ok
}

// guard checks output t of node n (output j of step i) after it ran: if it
// points into the arena outside the ranges the plan allows it (an alias the
// planner did not foresee), it is copied out so that the memory it shares
// cannot be overwritten while it is still in use.
func (c *Context) guard(i, j int, n *ir.Node, t *tensor.Tensor) (*tensor.Tensor, error) {
	sp, ok := c.arenaSpan(t)
	if !ok {
		return t, nil
	}
	for _, a := range c.mem.accept[i][j] {
		if sp.lo >= a.lo && sp.hi <= a.hi {
			return t, nil
		}
	}
	if strictAlias.Load() && !c.mem.copyOut[i][j] {
		return nil, fmt.Errorf("%w: node %q (%s) output %d (%q) at arena bytes [%d, %d)", errAlias, n.Name, n.OpType, j, n.Outputs[j].Name, sp.lo, sp.hi)
	}
	return t.Clone(), nil
}

// beginStep prepares env for step i of the top-level plan.
func (c *Context) beginStep(env *ops.Env, i int) {
	c.cur = c.mem.slots[i]
	c.nalloc = 0
	c.step = i
	env.Alloc = c.alloc
}
