package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/tensor"
)

// ErrTooManyShapes is returned by Shapes.Run for a new set of input shapes
// when the limit of engines is reached and every engine is in use (an idle
// one is closed to make room: the least recently used).
var ErrTooManyShapes = errors.New("gpuexec: too many distinct input shapes")

// GraphFunc returns a model's graph for concrete input shapes, optimized
// and with every shape inferred, as NewEngine takes it. done, when not nil,
// is called once the engine is built (it may release the model file).
type GraphFunc func(shapes map[string][]int) (g *ir.Graph, done func(), err error)

// Shapes runs a model whose input shapes vary between calls (a dynamic
// batch): it builds one Engine per distinct set of input shapes on first
// use, each replaying its own CUDA graphs, and keeps a pool of contexts per
// engine. At the limit of engines, a new shape closes the least recently
// used engine that no call is using (shapes that depend on the data, such
// as what follows a NonMaxSuppression, come and go). It is safe for
// concurrent use.
type Shapes struct {
	build GraphFunc
	opt   Options
	max   int

	mu      sync.Mutex
	engines map[string]*shapeEngine
	tick    uint64 // use counter, for the least recently used engine
	evicted int
	closed  bool
}

type shapeEngine struct {
	key   string        // the shapes' key in Shapes.engines
	ready chan struct{} // closed once e or err is set
	e     *Engine
	err   error
	mu    sync.Mutex
	free  []*Context
	// owned are the contexts of e that ShapesContexts hold (not in free);
	// closed is set once close has taken them. Both under mu.
	owned  map[*Context]bool
	closed bool
	// users counts the calls holding the engine, last the tick of the
	// latest (both under Shapes.mu).
	users int
	last  uint64
}

// NewShapes makes a Shapes building engines with build and opt, at most
// maxEngines of them (0: no limit).
func NewShapes(build GraphFunc, opt Options, maxEngines int) *Shapes {
	return &Shapes{build: build, opt: opt, max: maxEngines, engines: map[string]*shapeEngine{}}
}

// shapeKey spells the inputs' names, types and shapes.
func shapeKey(inputs map[string]*tensor.Tensor) (string, map[string][]int) {
	names := make([]string, 0, len(inputs))
	for n := range inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	shapes := make(map[string][]int, len(inputs))
	for _, n := range names {
		t := inputs[n]
		if t == nil {
			continue
		}
		shapes[n] = t.Shape
		fmt.Fprintf(&b, "%s:%v%v;", n, t.DType, t.Shape)
	}
	return b.String(), shapes
}

// engine returns the engine for the inputs' shapes, building it if needed.
func (s *Shapes) engine(inputs map[string]*tensor.Tensor) (*shapeEngine, error) {
	key, shapes := shapeKey(inputs)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	se, ok := s.engines[key]
	var old *shapeEngine
	if !ok {
		if s.max > 0 && len(s.engines) >= s.max {
			if old = s.idlest(); old == nil {
				s.mu.Unlock()
				return nil, fmt.Errorf("%w: %d engines built and in use, none for %s", ErrTooManyShapes, len(s.engines), key)
			}
			s.evicted++
		}
		se = &shapeEngine{key: key, ready: make(chan struct{}), owned: map[*Context]bool{}}
		s.engines[key] = se
	}
	s.tick++
	se.users++
	se.last = s.tick
	s.mu.Unlock()
	if old != nil {
		old.close() // not in use, out of the map: nobody can reach it
	}
	if !ok {
		g, done, err := s.build(shapes)
		if err == nil {
			se.e, err = NewEngine(g, s.opt)
		}
		if done != nil {
			done()
		}
		se.err = err
		close(se.ready)
	}
	<-se.ready
	if se.err != nil {
		s.release(se)
		return nil, fmt.Errorf("engine for %s: %w", key, se.err)
	}
	return se, nil
}

// idlest removes from the map and returns the least recently used engine
// that is built and not in use, or nil. s.mu is held.
func (s *Shapes) idlest() *shapeEngine {
	var key string
	var best *shapeEngine
	for k, se := range s.engines {
		select {
		case <-se.ready:
		default:
			continue // being built
		}
		if se.users == 0 && (best == nil || se.last < best.last) {
			key, best = k, se
		}
	}
	if best != nil {
		delete(s.engines, key)
	}
	return best
}

// release ends a call's hold on se.
func (s *Shapes) release(se *shapeEngine) {
	s.mu.Lock()
	se.users--
	s.mu.Unlock()
}

// close closes se's contexts (the pool's and those ShapesContexts hold)
// and its engine (built, not in use).
func (se *shapeEngine) close() error {
	se.mu.Lock()
	free, owned := se.free, se.owned
	se.free, se.owned, se.closed = nil, nil, true
	se.mu.Unlock()
	if se.e == nil {
		return nil
	}
	var errs []error
	for _, c := range free {
		errs = append(errs, c.Close())
	}
	for c := range owned {
		errs = append(errs, c.Close())
	}
	return errors.Join(append(errs, se.e.Close())...)
}

// Run runs the model on inputs with the engine of their shapes.
func (s *Shapes) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	se, err := s.engine(inputs)
	if err != nil {
		return nil, err
	}
	defer s.release(se)
	se.mu.Lock()
	var c *Context
	if n := len(se.free); n > 0 {
		c, se.free = se.free[n-1], se.free[:n-1]
	}
	se.mu.Unlock()
	if c == nil {
		if c, err = se.e.NewContext(); err != nil {
			return nil, err
		}
	}
	out, err := c.Run(ctx, inputs)
	se.mu.Lock()
	se.free = append(se.free, c)
	se.mu.Unlock()
	return out, err
}

// Engines returns the number of engines built (or being built).
func (s *Shapes) Engines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.engines)
}

// Evicted returns how many engines were closed to make room for others.
func (s *Shapes) Evicted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evicted
}

// Close closes every engine and its contexts. No Run may be in progress.
func (s *Shapes) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	engines := s.engines
	s.engines = nil
	s.mu.Unlock()
	var errs []error
	for _, se := range engines {
		<-se.ready
		errs = append(errs, se.close())
	}
	return errors.Join(errs...)
}

// ShapesContext is an execution context of a Shapes: for each input shape
// it runs, a Context of that shape's engine that it keeps (its own stream
// and device memory), instead of taking one from the engine's pool on
// every call as Shapes.Run does. It is what a server's instance holds. A
// ShapesContext is used by one goroutine at a time. When Shapes closes an
// engine to make room for another shape (see Shapes), the context's
// Context of that engine goes with it, and a later run of that shape makes
// a new one.
type ShapesContext struct {
	s      *Shapes
	ctxs   map[*shapeEngine]*Context
	closed bool
	// shared, when not nil, holds the activations and workspaces of sc's
	// Contexts, and of the other ShapesContexts' it is shared with
	// (ShareArena); owner: sc counts it in ArenaBytes.
	shared *devArena
	owner  bool
	// into is where runs put their outputs (SetOutputs).
	into map[string][]byte
}

var (
	_ device.SharedArena = (*ShapesContext)(nil)
	_ device.OutputsInto = (*ShapesContext)(nil)
)

// ShareArena makes sc's Contexts take their activations and workspaces
// from one device allocation with with's (a *ShapesContext of the same
// GPU), as large as the largest of them needs (device.SharedArena): for
// contexts that never run at the same time, as the device segments of
// one context of a partitioned program. sc's Contexts of different input
// shapes share it too. The allocation is made again, larger, when a new
// Context needs more, and the Contexts that had the old one bind their
// calls again (and capture their CUDA graphs again) at their next run.
// It reports false, changing nothing, when with is not such a context or
// either has a Context already.
func (sc *ShapesContext) ShareArena(with device.ProgramContext) bool {
	o, ok := with.(*ShapesContext)
	if !ok || o == sc || sc.closed || o.closed || len(sc.ctxs) > 0 || len(o.ctxs) > 0 ||
		sc.shared != nil || o.s.opt.Ordinal != sc.s.opt.Ordinal || o.s.opt.LibDir != sc.s.opt.LibDir {
		return false
	}
	if o.shared == nil {
		o.shared, o.owner = &devArena{}, true
	}
	sc.shared = o.shared
	return true
}

// ArenaAlone is the device memory sc's Contexts took, as ArenaBytes would
// report it had sc shared nothing: each one's activations and workspace
// (device.SharedArena).
func (sc *ShapesContext) ArenaAlone() int64 {
	var n int64
	for se, c := range sc.ctxs {
		se.mu.Lock()
		if se.owned[c] {
			n += se.e.prog.arena + int64(se.e.ws)
		}
		se.mu.Unlock()
	}
	return n
}

// SetOutputs makes sc's later runs return each output over bufs[its
// name] when it fits there (device.OutputsInto): the output's bytes are
// copied from the pinned buffer the GPU wrote them to into that memory
// instead of a new tensor. nil stops it.
func (sc *ShapesContext) SetOutputs(bufs map[string][]byte) { sc.into = bufs }

// NewContext returns a new execution context of s. It takes no device
// memory before its first run.
func (s *Shapes) NewContext() *ShapesContext {
	return &ShapesContext{s: s, ctxs: map[*shapeEngine]*Context{}}
}

// Run runs the model on inputs in sc's Context for their shapes, made on
// the first run of those shapes.
func (sc *ShapesContext) Run(ctx context.Context, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	if sc.closed {
		return nil, ErrClosed
	}
	se, err := sc.s.engine(inputs)
	if err != nil {
		return nil, err
	}
	defer sc.s.release(se)
	c := sc.ctxs[se]
	if c == nil {
		sc.prune()
		if c, err = se.e.newContext(sc.shared); err != nil {
			return nil, err
		}
		// se is in use (engine counted this call), so it is not closed
		// before the context is recorded for close to find.
		se.mu.Lock()
		se.owned[c] = true
		se.mu.Unlock()
		sc.ctxs[se] = c
	}
	return c.run(ctx, inputs, sc.into)
}

// prune forgets the Contexts of engines Shapes has closed.
func (sc *ShapesContext) prune() {
	for se := range sc.ctxs {
		se.mu.Lock()
		gone := se.closed
		se.mu.Unlock()
		if gone {
			delete(sc.ctxs, se)
		}
	}
}

// ArenaBytes returns the device memory sc's Contexts hold: each one's
// activation arena and library workspace; with a shared arena
// (ShareArena), its allocation in the context that first had it, nothing
// in the others.
func (sc *ShapesContext) ArenaBytes() int64 {
	if sc.shared != nil {
		if sc.owner {
			return sc.shared.bytes()
		}
		return 0
	}
	return sc.ArenaAlone()
}

// Close closes sc's Contexts (those of engines Shapes has not closed
// already). Later runs return ErrClosed. It is idempotent.
func (sc *ShapesContext) Close() error {
	if sc.closed {
		return nil
	}
	sc.closed = true
	s := sc.s
	// Engines still in s are held while their contexts close, so that no
	// eviction closes the engine meanwhile; an engine already out of s is
	// being (or was) closed with every context it owns.
	var held []*shapeEngine
	s.mu.Lock()
	for se := range sc.ctxs {
		if s.engines != nil && s.engines[se.key] == se {
			se.users++
			held = append(held, se)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, se := range held {
		c := sc.ctxs[se]
		se.mu.Lock()
		mine := se.owned[c]
		delete(se.owned, c)
		se.mu.Unlock()
		if mine {
			errs = append(errs, c.Close())
		}
		s.release(se)
	}
	sc.ctxs = nil
	return errors.Join(errs...)
}
