package optimize

import (
	"errors"
	"fmt"
	"sort"

	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
)

var (
	// ErrPass is wrapped by the errors of a pass that failed.
	ErrPass = errors.New("optimize: pass failed")
	// ErrNotConverged is returned by Run when the passes still change the
	// graph after MaxIterations rounds.
	ErrNotConverged = errors.New("optimize: passes did not reach a fixed point")
)

// Pass is one graph rewrite.
type Pass interface {
	// Name is the pass's registered name, e.g. "bnfold".
	Name() string
	// Apply rewrites g in place and reports whether it changed anything.
	// The graph it leaves computes the same outputs as before.
	Apply(g *ir.Graph) (changed bool, err error)
}

// LoggingPass is implemented by passes that can say what they did; Run
// calls ApplyLog instead of Apply when a pass has it.
type LoggingPass interface {
	Pass
	// ApplyLog is Apply calling log once per rewrite it makes.
	ApplyLog(g *ir.Graph, log func(msg string)) (changed bool, err error)
}

// MaxIterations bounds the rounds of Run.
const MaxIterations = 16

// order declares the order passes run in within one round and the
// optimization level from which each one runs. Registered passes missing
// from it run after these, sorted by name, from level 1.
var order = []struct {
	name  string
	level int
}{
	{"identity", 1},
	{"layout", 1},
	{"dropout", 1},
	{"shapefold", 1},
	{"constfold", 1},
	{"transpose", 1},
	{"reshape", 1},
	{"concat", 1},
	{"dce", 1},
	{"gelu", 2},
	{"layernorm", 2},
	{"attention", 2},
	{"bnfold", 2},
	{"convfuse", 2},
	{"blocked", 2},
	{"matmuladd", 2},
	{"qkvmerge", 2},
	{"skiplayernorm", 2},
	{"mha", 2},
}

var registry = map[string]Pass{}

// Register adds a pass; it panics if a pass of the same name exists.
func Register(p Pass) {
	name := p.Name()
	if _, dup := registry[name]; dup {
		panic("optimize: duplicate pass " + name)
	}
	registry[name] = p
}

// Lookup returns the registered pass of the given name.
func Lookup(name string) (Pass, bool) {
	p, ok := registry[name]
	return p, ok
}

// Passes returns the registered passes that run at the given optimization
// level, in their declared order. Level 0 runs none; level 1 the
// eliminations and folds; level 2 and above the fusions too. Device
// passes (DevicePass) are left out: PassesFor includes them.
func Passes(level int) []Pass { return PassesFor(level, "") }

// passesAll is Passes with the device passes.
func passesAll(level int) []Pass {
	var out []Pass
	seen := map[string]bool{}
	for _, o := range order {
		seen[o.name] = true
		if p, ok := registry[o.name]; ok && level >= o.level {
			out = append(out, p)
		}
	}
	var rest []string
	for name := range registry {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	for _, name := range rest {
		if level >= 1 {
			out = append(out, registry[name])
		}
	}
	return out
}

// Run applies the passes of the given level to g until none changes it (at
// most MaxIterations rounds), inferring types before each pass. log, when
// not nil, receives each pass's reports.
func Run(g *ir.Graph, level int, log func(pass, msg string)) error {
	return RunPasses(g, Passes(level), log)
}

// RunPasses is Run with an explicit list of passes.
func RunPasses(g *ir.Graph, passes []Pass, log func(pass, msg string)) error {
	if len(passes) == 0 {
		return nil
	}
	for round := 0; round < MaxIterations; round++ {
		changed := false
		for _, p := range passes {
			if err := infer(g); err != nil {
				return fmt.Errorf("%w: before %s: %w", ErrPass, p.Name(), err)
			}
			var c bool
			var err error
			if lp, ok := p.(LoggingPass); ok && log != nil {
				name := p.Name()
				c, err = lp.ApplyLog(g, func(msg string) { log(name, msg) })
			} else {
				c, err = p.Apply(g)
			}
			if err != nil {
				return fmt.Errorf("%w: %s: %w", ErrPass, p.Name(), err)
			}
			if c {
				if err := g.Sort(); err != nil {
					return fmt.Errorf("%w: %s left a cycle: %w", ErrPass, p.Name(), err)
				}
				changed = true
			}
		}
		if !changed {
			return infer(g)
		}
	}
	return ErrNotConverged
}

// infer types g and its subgraphs the way engine.New does.
func infer(g *ir.Graph) error {
	if _, err := ops.InferGraph(g); err != nil {
		return err
	}
	for _, n := range g.Nodes {
		for _, sg := range n.Subgraphs() {
			if err := infer(sg); err != nil {
				return fmt.Errorf("subgraph of node %q (%s): %w", n.Name, n.OpType, err)
			}
		}
	}
	return nil
}
