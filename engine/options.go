package engine

import (
	"errors"
	"fmt"
	"runtime"
	"sort"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// ErrOption is returned by NewWithOptions for an option that does not fit
// the graph: a tactic for an unknown node, a tactic a kernel does not have,
// a max shape for an unknown input or of the wrong rank.
var ErrOption = errors.New("engine: bad option")

// Options tune how an engine is prepared. The zero value is what New uses.
type Options struct {
	// Tactics maps a node name to the tactic (implementation) its kernel
	// uses; see ops.Tactical. An unknown node name, a node whose kernel has
	// no tactics, or a tactic the kernel does not offer is an error.
	Tactics map[string]string
	// MaxShapes gives, per graph input, the largest shape it will be run
	// with: intermediates are sized for these shapes in the memory plan.
	// Inputs left out keep their declared shape; when none is given and an
	// input has a symbolic dimension, the engine plans no arena when it is
	// built: each run plans one for its own input shapes (kept for the
	// next runs with those shapes). Runs with larger inputs still work:
	// what does not fit its slot is allocated on its own.
	MaxShapes map[string][]int
	// Profiles are the optimization profiles the engine accepts; when not
	// empty, Run rejects inputs that fit none of them (see CheckProfiles)
	// and, without MaxShapes, memory is planned for the largest Max shape
	// of every input across the profiles.
	Profiles []Profile
	// NoArena turns the memory plan off: every kernel output is a fresh
	// allocation, as kernels make them without an engine.
	NoArena bool
	// MemoryLimit bounds, in bytes, the memory one execution context
	// allocates through the engine: its arena, and any one tensor a kernel
	// asks the engine for. An engine whose arena at the largest shapes of
	// its profiles (or its max shapes) would exceed it is refused, and a
	// run that would exceed it (inputs beyond the max shapes) fails, both
	// with ErrMemory, before anything is allocated. 0 means
	// DefaultMemoryLimit(); a negative value means no limit.
	MemoryLimit int64
}

// NewWithOptions is New with options: it validates g, infers its shapes,
// prepares its kernels (and those of every subgraph), applies the chosen
// tactics and plans the memory of the top-level graph's intermediates.
func NewWithOptions(g *ir.Graph, o Options) (*Engine, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{graph: g, plans: map[*ir.Graph]*plan{}}
	if err := e.prepare(g); err != nil {
		return nil, err
	}
	if err := e.applyTactics(o.Tactics); err != nil {
		return nil, err
	}
	inputs := e.Inputs()
	for i := range o.Profiles {
		if err := o.Profiles[i].Validate(inputs); err != nil {
			return nil, err
		}
	}
	e.profiles = append([]Profile(nil), o.Profiles...)
	maxShapes, err := e.maxShapes(o)
	if err != nil {
		return nil, err
	}
	e.limit = o.memoryLimit()
	if !o.NoArena {
		m, err := planMemory(e.plans[g], maxShapes, len(o.MaxShapes) > 0 || len(o.Profiles) > 0)
		if err != nil {
			return nil, err
		}
		e.mem = m
		e.planShapes = maxShapes
		e.memKey = e.maxKey()
		// Without max shapes for a symbolic dimension nothing is planned
		// now: each run plans for the shapes it is given (see bucket.go),
		// which also bounds its memory before it starts.
		e.dynamic = m == nil && len(maxShapes) == 0
		if m != nil && int64(m.arenaBytes) > e.limit {
			return nil, fmt.Errorf("%w: the activation arena for the largest input shapes (%s) needs %s, more than the limit of %s per execution context: lower the max batch size or the dimension ranges of the profiles, or raise the memory limit",
				ErrMemory, e.shapesString(maxShapes), FormatBytes(int64(m.arenaBytes)), limitString(e.limit))
		}
	}
	e.idle = make(chan *Context, runtime.GOMAXPROCS(0))
	return e, nil
}

// applyTactics calls SetTactic on the kernels of the named nodes, in every
// graph (subgraphs included).
func (e *Engine) applyTactics(tactics map[string]string) error {
	if len(tactics) == 0 {
		return nil
	}
	names := make([]string, 0, len(tactics))
	for n := range tactics {
		names = append(names, n)
	}
	sort.Strings(names) // report errors in a stable order
	for _, name := range names {
		tactic := tactics[name]
		found, computed := false, false
		for _, p := range e.plans {
			for _, n := range p.g.Nodes {
				if n.Name == name && folded(n) {
					computed = true
				}
			}
			for _, s := range p.steps {
				if s.node.Name != name {
					continue
				}
				found = true
				t, ok := s.kernel.(ops.Tactical)
				if !ok {
					return fmt.Errorf("%w: node %q (%s) has no tactics, cannot use tactic %q", ErrOption, name, s.node.OpType, tactic)
				}
				if err := t.SetTactic(tactic); err != nil {
					return fmt.Errorf("%w: node %q (%s): tactic %q: %w", ErrOption, name, s.node.OpType, tactic, err)
				}
			}
		}
		switch {
		case found:
		case computed:
			return fmt.Errorf("%w: node %q is computed when the engine is built, it takes no tactic (%q)", ErrOption, name, tactic)
		default:
			return fmt.Errorf("%w: tactic %q for node %q: the graph has no node %q", ErrOption, tactic, name, name)
		}
	}
	return nil
}

// maxShapes checks o.MaxShapes against the graph inputs, or derives them
// from the profiles (the largest Max of each dimension across profiles).
func (e *Engine) maxShapes(o Options) (map[string][]int, error) {
	byName := map[string]*ir.Value{}
	for _, v := range e.graph.Inputs {
		byName[v.Name] = v
	}
	if len(o.MaxShapes) == 0 {
		if len(o.Profiles) == 0 {
			return nil, nil
		}
		m := map[string][]int{}
		for _, p := range o.Profiles {
			for _, r := range p.Inputs {
				cur, ok := m[r.Input]
				if !ok {
					m[r.Input] = append([]int(nil), r.Max...)
					continue
				}
				for d := range cur {
					if d < len(r.Max) && r.Max[d] > cur[d] {
						cur[d] = r.Max[d]
					}
				}
			}
		}
		return m, nil
	}
	for name, shape := range o.MaxShapes {
		v, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("%w: max shape for %q: the model has no input %q (inputs: %s)", ErrOption, name, name, inputNames(e.Inputs()))
		}
		if err := tensor.CheckShape(shape); err != nil {
			return nil, fmt.Errorf("%w: max shape of input %q: %w", ErrOption, name, err)
		}
		s := v.Type.Shape
		if s == nil {
			continue
		}
		if len(s) != len(shape) {
			return nil, fmt.Errorf("%w: max shape %v of input %q has rank %d, the input has rank %d %v", ErrOption, shape, name, len(shape), len(s), s)
		}
		for d, dim := range s {
			if dim.Known() && int(dim.Val) != shape[d] {
				return nil, fmt.Errorf("%w: max shape %v of input %q: dimension %d is fixed at %d", ErrOption, shape, name, d, dim.Val)
			}
		}
	}
	return o.MaxShapes, nil
}
