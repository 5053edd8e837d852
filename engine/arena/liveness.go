package arena

// Liveness: how long each buffer lives, one model for every device.
//
// A program is steps run one after the other, each reading and writing
// values (numbered 0 to n-1 by the caller). What a buffer is stays the
// caller's business: which values share one storage (a view and what it
// views, an output written in place over an input, a Concat's inputs
// placed inside its output: the CPU engine's groups; a value's store and
// its other layouts and precisions: the CUDA executor's stores; a
// segment's arena and the tensors it passes on: a partitioned program's
// host arena), and which values may view others. How long each lives is
// decided here, by these rules:
//
//   - A value is accessed at each step that reads or writes it, at step
//     -1 when it is an input (given before the first step) and at step
//     len(steps) (one past the last) when it is pinned (it must outlive
//     the last step: a graph output the program keeps in its memory, or
//     every value when all must be readable after a run).
//   - A value's life (Lives) runs from its first access to its last,
//     both included: a value written and never read lives at its write
//     step only; a value never accessed does not live (First > Last).
//   - A storage's life (Buffers) is the smallest interval that covers the
//     life of every value in it and of every value that is or may be a
//     view of one in it (viewOf, followed transitively: a view of a view
//     keeps the first one's storage too). A storage no live value touches
//     gets First 0, Last -1: it overlaps nothing.
//
// The intervals are those Place and PeakLive take: two storages whose
// lives share a step never share bytes, so a step's outputs never
// overlap its inputs.

// Step is what one step of a program does with values: the values it
// reads and those it writes (a value both read and written by it, in
// place, may be in both).
type Step struct {
	Reads, Writes []int
}

// Span is a life: from step First to step Last, both included (First -1:
// an input; Last len(steps): pinned). First > Last: not live.
type Span struct {
	First, Last int
}

// Live reports whether s covers at least one step.
func (s Span) Live() bool { return s.First <= s.Last }

// add widens s to cover step i.
func (s Span) add(i int) Span {
	if !s.Live() {
		return Span{i, i}
	}
	return Span{min(s.First, i), max(s.Last, i)}
}

// cover widens s to cover t.
func (s Span) cover(t Span) Span {
	if !t.Live() {
		return s
	}
	if !s.Live() {
		return t
	}
	return Span{min(s.First, t.First), max(s.Last, t.Last)}
}

// Lives returns the life of each of n values (ids 0 to n-1) of a program
// whose steps, in execution order, are steps: the package's rules, with
// inputs accessed at step -1 and pinned values at step len(steps). Ids
// out of range are ignored.
func Lives(steps []Step, n int, inputs, pinned []int) []Span {
	lives := make([]Span, n)
	for i := range lives {
		lives[i] = Span{0, -1}
	}
	at := func(v, i int) {
		if v >= 0 && v < n {
			lives[v] = lives[v].add(i)
		}
	}
	for _, v := range inputs {
		at(v, -1)
	}
	for i, s := range steps {
		for _, v := range s.Reads {
			at(v, i)
		}
		for _, v := range s.Writes {
			at(v, i)
		}
	}
	for _, v := range pinned {
		at(v, len(steps))
	}
	return lives
}

// Buffers returns one Buffer per storage (sizes[s] bytes, ids 0 to
// len(sizes)-1), live for the package's rules: over the lives (Lives) of
// the values it holds and of those that are or may be views of them.
// storage[v] is the storage value v lives in (-1: none of them, such as a
// pure view, a constant or a value outside the arena); nil: value v is
// storage v. viewOf[v] is the value v is or may be a view of (-1: none);
// nil: no views.
func Buffers(lives []Span, storage, viewOf []int, sizes []int64) []Buffer {
	spans := make([]Span, len(sizes))
	for i := range spans {
		spans[i] = Span{0, -1}
	}
	of := func(v int) int {
		if storage == nil {
			return v
		}
		if v < len(storage) {
			return storage[v]
		}
		return -1
	}
	extend := func(v int, life Span) {
		if s := of(v); s >= 0 && s < len(spans) {
			spans[s] = spans[s].cover(life)
		}
	}
	for v, life := range lives {
		if !life.Live() {
			continue
		}
		extend(v, life)
		// what v may view, and what that views: bounded, against a cycle
		for u, k := v, 0; viewOf != nil && u < len(viewOf) && viewOf[u] >= 0 && k < len(lives); k++ {
			u = viewOf[u]
			extend(u, life)
		}
	}
	bufs := make([]Buffer, len(sizes))
	for s, sz := range sizes {
		bufs[s] = Buffer{Size: sz, First: spans[s].First, Last: spans[s].Last}
	}
	return bufs
}
