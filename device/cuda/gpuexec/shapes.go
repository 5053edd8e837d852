package gpuexec

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

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
	ready chan struct{} // closed once e or err is set
	e     *Engine
	err   error
	mu    sync.Mutex
	free  []*Context
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
		se = &shapeEngine{ready: make(chan struct{})}
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

// close closes se's contexts and engine (built, not in use).
func (se *shapeEngine) close() error {
	if se.e == nil {
		return nil
	}
	var errs []error
	for _, c := range se.free {
		errs = append(errs, c.Close())
	}
	se.free = nil
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
