package gpuexec

import (
	"slices"

	"github.com/kilnai/kiln/engine/arena"
)

// Alignment is the byte alignment of every tensor in the device buffers.
const Alignment = 256

func align(n int64) int64 { return arena.Align(n, Alignment) }

// interval is one buffer of the arena (a store): its size and, once the
// program is compiled, its lifetime (accesses.lifetimes): written by step
// first (-1 for a graph input) and last read by step last (inclusive;
// len(steps) for one that outlives the last step).
type interval struct {
	size        int64
	first, last int
}

func (a interval) overlaps(b interval) bool { return a.first <= b.last && b.first <= a.last }

// accesses records, as the compiler emits steps, what each step does with
// the arena's stores (by id): the input of package arena's liveness
// model, which gives each store's lifetime once every step is emitted.
// A store is its own value and storage for the model: what shares a
// store (a Reshape's output and its input, a value and its other layouts
// and precisions, each a store of its own) the compiler decides when it
// resolves a value to a store (storeOf) before recording the access.
type accesses struct {
	steps  []arena.Step
	inputs []int // graph inputs' stores: given before the first step
	pinned []int // stores that outlive the last step
}

// at returns the record of step i, growing the list to hold it.
func (a *accesses) at(i int) *arena.Step {
	for len(a.steps) <= i {
		a.steps = append(a.steps, arena.Step{})
	}
	return &a.steps[i]
}

func (a *accesses) write(step, id int) { s := a.at(step); s.Writes = append(s.Writes, id) }
func (a *accesses) read(step, id int)  { s := a.at(step); s.Reads = append(s.Reads, id) }

// madeAt returns the step that first writes store id: -1 for a graph
// input's, len(steps) for one no step recorded so far writes.
func (a *accesses) madeAt(id int) int {
	if slices.Contains(a.inputs, id) {
		return -1
	}
	for i, s := range a.steps {
		if slices.Contains(s.Writes, id) {
			return i
		}
	}
	return len(a.steps)
}

// lifetimes sets each store's first and last step from the accesses of a
// program of n steps (pinned stores live to step n), by package arena's
// liveness model.
func (a *accesses) lifetimes(stores []interval, n int) {
	steps := a.steps
	if len(steps) < n {
		steps = append(steps, make([]arena.Step, n-len(steps))...)
	}
	sizes := make([]int64, len(stores))
	for i, s := range stores {
		sizes[i] = s.size
	}
	for i, b := range arena.Buffers(arena.Lives(steps, len(stores), a.inputs, a.pinned), nil, nil, sizes) {
		stores[i].first, stores[i].last = b.First, b.Last
	}
}

// planOffsets gives each buffer an offset in one arena such that buffers
// whose lifetimes overlap do not share bytes, and returns the arena's size:
// kiln's one memory planner (package arena, which the CPU engine's host
// arenas use too), at Alignment.
func planOffsets(bufs []interval) (offsets []int64, total int64) {
	b := make([]arena.Buffer, len(bufs))
	for i, v := range bufs {
		b[i] = arena.Buffer{Size: v.size, First: v.first, Last: v.last}
	}
	return arena.Place(b, Alignment)
}
