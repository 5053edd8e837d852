package engine

import (
	"context"
	"fmt"
	"slices"
	"unsafe"

	"github.com/kilnai/kiln/engine/arena"
	"github.com/kilnai/kiln/ir"
	"github.com/kilnai/kiln/ops"
	"github.com/kilnai/kiln/tensor"
)

// MemoryStats describes the memory plan of an engine's top-level graph.
type MemoryStats struct {
	// ArenaBytes is the size of the arena each execution context holds:
	// every planned intermediate lives in it, at an offset shared with
	// values whose lifetimes do not overlap. 0 when there is no plan.
	ArenaBytes int
	// IntermediateBytes is the sum of the sizes of all intermediates (node
	// outputs that are not graph outputs) whose size is known at the max
	// shapes and that own their memory (views, such as Reshape outputs, do
	// not): what they would take without reuse.
	IntermediateBytes int
	// Values is the number of intermediates of the top-level graph.
	Values int
	// InArena is how many of them live in the arena (views of arena
	// values included).
	InArena int
	// InPlace is how many of them are written over an input of their
	// node that dies there (ops.OverwritesResidual: a BlockedConv's
	// output over its residual), in the input's slot.
	InPlace int
}

// Memory returns the engine's memory plan statistics.
func (e *Engine) Memory() MemoryStats {
	if e.mem == nil {
		return MemoryStats{}
	}
	return e.mem.stats
}

// memPlan assigns intermediates of the top-level plan to arena offsets.
type memPlan struct {
	arenaBytes int
	// peakLive is the most bytes (slots aligned) live at any one step: no
	// assignment of offsets can make the arena smaller.
	peakLive int
	// buffers are the arena allocations the plan placed (package arena's
	// input), for tests to compare packers on.
	buffers []arena.Buffer
	// slots[i][j] is where output j of step i goes (size 0: not planned).
	slots [][]slot
	// accept[i][j] are the arena ranges output j of step i may point into:
	// its own slot and, for outputs that may be views, the slots of what
	// they view. An output in the arena outside these is copied out.
	accept [][][]span
	// copyOut[i][j] is set for an output that may alias arena memory in a
	// way the plan knows of (a graph output that may be a view, the output
	// of an If): the guard copies it out of the arena, even when strict.
	copyOut [][]bool
	stats   MemoryStats
}

type slot struct {
	off, size int
	dt        tensor.DType
}

type span struct{ lo, hi int }

// arenaAlign is the alignment of every slot.
const arenaAlign = tensor.Alignment

// maxFold bounds the elements of the inputs of a node whose outputs the
// planner computes (shape arithmetic), as ops.InferGraph does.
const maxFold = 1 << 16

// group is one arena allocation: a value that owns memory, shared by the
// values that view it. How long it lives is package arena's liveness
// model's (see liveness).
type group struct {
	size     int
	dt       tensor.DType
	excluded bool
	off      int
	// parent, when set, is the group of a Concat's output this group lies
	// in, rel bytes from its start (see nestConcats); off is then set from
	// the parent's.
	parent *group
	rel    int
}

// planMemory sizes the intermediates of p at maxShapes and assigns them
// arena offsets by liveness. It returns nil when nothing can be planned
// (symbolic input dimensions and no max shapes). With strict, a node whose
// inference fails at the max shapes is an error; otherwise its outputs are
// simply not planned.
func planMemory(p *plan, maxShapes map[string][]int, strict bool) (*memPlan, error) {
	sized, ok, err := inferAt(p, maxShapes, strict)
	if err != nil || !ok {
		return nil, err
	}
	n := len(p.steps)
	m := &memPlan{slots: make([][]slot, n), accept: make([][][]span, n), copyOut: make([][]bool, n)}

	lv := newLiveness(p)
	last := func(v *ir.Value) int { return lv.lives[lv.ids[v]].Last }
	isIntermediate := func(o *ir.Value) bool { return o != nil && o.Const == nil && !p.keep[o] }

	inPlace := residualsInPlace(p, sized, last)

	// owner: the group a value owns; shares: the group a pure view uses
	var groups []*group
	owner := map[*ir.Value]*group{}
	shares := map[*ir.Value]*group{}
	for _, s := range p.steps {
		n := s.node
		for j, o := range n.Outputs {
			if !isIntermediate(o) {
				if o != nil && p.keep[o] && j == 0 && isView(n, ops.ViewOfInput0) {
					if g := rootOf(n.Inputs[0], owner, shares); g != nil {
						g.excluded = true // a graph output must not live in the arena
					}
				}
				continue
			}
			m.stats.Values++
			if j == 0 && isView(n, ops.ViewOfInput0) {
				if g := rootOf(n.Inputs[0], owner, shares); g != nil {
					shares[o] = g
				}
				continue
			}
			size, dt, ok := sizeOf(sized[o])
			if !ok {
				continue
			}
			m.stats.IntermediateBytes += size
			if size == 0 {
				continue
			}
			if z := inPlace[o]; z != nil {
				if g := owner[z]; g != nil && !g.excluded && g.size == size && g.dt == dt {
					owner[o] = g // written over its residual, which dies here
					m.stats.InPlace++
					continue
				}
			}
			g := &group{size: size, dt: dt}
			groups = append(groups, g)
			owner[o] = g
		}
	}

	// what each value may point into: its own group and, for a value
	// that is or may be a view, what its input 0 may point into
	accept := map[*ir.Value][]*group{}
	for _, s := range p.steps {
		n := s.node
		for j, o := range n.Outputs {
			if !isIntermediate(o) {
				continue
			}
			var acc []*group
			if g := owner[o]; g != nil {
				acc = append(acc, g)
			}
			if j == 0 && (isView(n, ops.ViewOfInput0) || isView(n, ops.MayViewInput0)) {
				acc = append(acc, accept[n.Inputs[0]]...)
				lv.viewOf[lv.ids[o]] = lv.ids[n.Inputs[0]]
			}
			var kept []*group
			for _, g := range acc {
				if !g.excluded {
					kept = append(kept, g)
				}
			}
			accept[o] = kept
		}
	}

	top := nestConcats(p, sized, owner, shares, groups)
	live, bufs := lv.buffers(top, owner)
	m.arenaBytes = assignOffsets(live, bufs)
	m.buffers = bufs
	m.peakLive = int(arena.PeakLive(bufs, arenaAlign))
	for _, g := range groups {
		g.off = nestedOff(g)
	}
	m.stats.ArenaBytes = m.arenaBytes
	for i, s := range p.steps {
		n := s.node
		m.slots[i] = make([]slot, len(n.Outputs))
		m.accept[i] = make([][]span, len(n.Outputs))
		m.copyOut[i] = make([]bool, len(n.Outputs))
		for j, o := range n.Outputs {
			if o == nil {
				continue
			}
			// known ways for an output to alias arena memory it does not
			// own, copied out without complaint: a graph output that is or
			// may be a view (of a value that may itself view the arena),
			// and the outputs of control flow, which may be values of the
			// enclosing graph (an If branch returning one)
			view := j == 0 && (isView(n, ops.ViewOfInput0) || isView(n, ops.MayViewInput0))
			m.copyOut[i][j] = (view && p.keep[o]) || len(n.Subgraphs()) > 0
			if g := owner[o]; g != nil && !g.excluded {
				m.slots[i][j] = slot{off: g.off, size: g.size, dt: g.dt}
			}
			for _, g := range accept[o] {
				m.accept[i][j] = append(m.accept[i][j], span{g.off, g.off + g.size})
			}
			if len(accept[o]) > 0 {
				m.stats.InArena++
			}
		}
	}
	if m.arenaBytes == 0 {
		return nil, nil
	}
	return m, nil
}

// nestConcats places the inputs of Concats inside their outputs: for a
// Concat whose inputs lie one after the other in its output (only 1s
// before the axis) and each own memory of their own, or are pure views of
// the whole of a value that does (not graph outputs, in no other Concat,
// at 64-byte aligned offsets), each input's
// group goes into the output's group at its offset there (so the
// output's lifetime covers theirs: see liveness.buffers). The producers
// then write where the Concat would have copied them, and ops/shape's
// Concat skips inputs already in place. It returns the groups that are
// not nested.
func nestConcats(p *plan, sized map[*ir.Value]*ir.Value, owner, shares map[*ir.Value]*group, groups []*group) []*group {
	for _, s := range p.steps {
		n := s.node
		if !isConcat(n) || len(n.Outputs) != 1 {
			continue
		}
		out := owner[n.Outputs[0]]
		if out == nil || out.excluded || out.parent != nil {
			continue
		}
		ov := sized[n.Outputs[0]]
		if ov == nil {
			continue
		}
		dims, ok := ov.Type.Shape.Ints()
		if !ok {
			continue
		}
		a, err := ops.ParseConcatAttrs(n, p.g.Opset()) // axis 1 by default before opset 4
		if err != nil {
			continue // the kernel refuses it
		}
		axis := int(a.Axis)
		if axis < 0 {
			axis += len(dims)
		}
		if axis < 0 || axis >= len(dims) || tensor.NumElements(dims[:axis]) != 1 {
			continue
		}
		var ins []*group
		rel := 0
		for _, x := range n.Inputs {
			// a Reshape (pure view) of a value of its size lies where
			// that value does
			g := rootOf(x, owner, shares)
			if size, _, ok := sizeOf(sized[x]); !ok || g == nil || size != g.size || g.excluded || g.parent != nil ||
				g == out || g.dt != out.dt || slices.Contains(ins, g) || rel%arenaAlign != 0 {
				ins = nil
				break
			}
			ins = append(ins, g)
			rel += g.size
		}
		if ins == nil || rel != out.size {
			continue
		}
		rel = 0
		for _, g := range ins {
			g.parent, g.rel = out, rel
			rel += g.size
		}
	}
	var top []*group
	for _, g := range groups {
		if g.parent == nil {
			top = append(top, g)
		}
	}
	return top
}

// residualsInPlace returns the outputs that take the memory of the
// residual input they are computed from (output 0 of an op with
// ops.OverwritesResidual, keyed to its input ops.ResidualInput), where
// that is safe: the residual is an intermediate that owns its memory (not
// a view, nor the output of an op that may make one, nor a Concat's
// output), the node is its last reader and reads it at that input only,
// the output is an intermediate of the same type and size, and no value
// that views the residual (through ops.ViewOfInput0 or MayViewInput0 ops,
// transitively) is a graph output, is read at or after the node, or is a
// Concat's input (placed inside the Concat's output: see nestConcats).
// planMemory then gives the output the residual's group: the kernel runs
// with the two over the same memory.
func residualsInPlace(p *plan, sized map[*ir.Value]*ir.Value, last func(*ir.Value) int) map[*ir.Value]*ir.Value {
	const k = ops.ResidualInput
	viewer := func(n *ir.Node) bool { return isView(n, ops.ViewOfInput0) || isView(n, ops.MayViewInput0) }
	views := map[*ir.Value][]*ir.Value{} // value -> the values that may view it
	made := map[*ir.Value]*ir.Node{}     // value -> its node
	concatIn := map[*ir.Value]bool{}     // inputs of Concats
	var out map[*ir.Value]*ir.Value
	for _, s := range p.steps {
		n := s.node
		for _, o := range n.Outputs {
			if o != nil {
				made[o] = n
			}
		}
		if viewer(n) && len(n.Outputs) > 0 && n.Outputs[0] != nil {
			views[n.Inputs[0]] = append(views[n.Inputs[0]], n.Outputs[0])
		}
		if isConcat(n) {
			for _, x := range n.Inputs {
				concatIn[x] = true
			}
		}
	}
	intermediate := func(v *ir.Value) bool { return v != nil && v.Const == nil && !p.keep[v] }
	for i, s := range p.steps {
		n := s.node
		if !ops.TraitsOf(n.Domain, n.OpType).Has(ops.OverwritesResidual) || len(n.Inputs) <= k || len(n.Outputs) == 0 {
			continue
		}
		y, z := n.Outputs[0], n.Inputs[k]
		if !intermediate(y) || !intermediate(z) || last(z) != i || concatIn[z] {
			continue
		}
		if d := made[z]; d == nil || viewer(d) || isConcat(d) || len(d.Subgraphs()) > 0 {
			continue // a graph input, or memory that may be another value's
		}
		sy, dy, oky := sizeOf(sized[y])
		sz, dz, okz := sizeOf(sized[z])
		if !oky || !okz || sy != sz || dy != dz {
			continue
		}
		ok := true
		for j, x := range n.Inputs {
			if j != k && x == z {
				ok = false // also read at another input (as x, say)
			}
		}
		// every value that may view z: dead before step i
		for q := slices.Clone(views[z]); ok && len(q) > 0; {
			v := q[len(q)-1]
			q = q[:len(q)-1]
			if p.keep[v] || last(v) >= i || concatIn[v] {
				ok = false
			}
			q = append(q, views[v]...)
		}
		if ok {
			if out == nil {
				out = map[*ir.Value]*ir.Value{}
			}
			out[y] = z
		}
	}
	return out
}

// nestedOff returns g's arena offset: its own, or its parent's plus rel.
func nestedOff(g *group) int {
	if g.parent == nil {
		return g.off
	}
	return nestedOff(g.parent) + g.rel
}

// isView reports whether n's output 0 is (ops.ViewOfInput0) or may be
// (ops.MayViewInput0) a view of its input 0, as its op's traits say:
// Reshape, Flatten, Squeeze, Unsqueeze and Identity always are; output 0
// of Transpose, Cast, CastLike, Dropout, DepthToSpace, SpaceToDepth and
// the variadic Sum, Max, Min and Mean may be (their output gets its own
// slot and input 0's memory is kept alive as long as the output).
func isView(n *ir.Node, trait ops.Traits) bool {
	return defaultDomain(n) && ops.TraitsOf(n.Domain, n.OpType).Has(trait) && len(n.Inputs) > 0 && n.Inputs[0] != nil
}

func isConcat(n *ir.Node) bool {
	return defaultDomain(n) && n.OpType == "Concat" && len(n.Inputs) > 0 && n.Inputs[0] != nil
}

func defaultDomain(n *ir.Node) bool { return n.Domain == "" || n.Domain == "ai.onnx" }

// rootOf returns the group whose memory v uses (its own or the one it views).
func rootOf(v *ir.Value, owner, shares map[*ir.Value]*group) *group {
	if g := owner[v]; g != nil {
		return g
	}
	return shares[v]
}

// sizeOf returns the byte size of a value whose type is fully known.
func sizeOf(v *ir.Value) (int, tensor.DType, bool) {
	if v == nil || !v.Type.DType.Valid() || v.Type.DType == tensor.String {
		return 0, 0, false
	}
	dims, ok := v.Type.Shape.Ints()
	if !ok || tensor.CheckShape(dims) != nil {
		return 0, 0, false
	}
	return tensor.NumElements(dims) * v.Type.DType.Size(), v.Type.DType, true
}

func alignUp(n int) int { return (n + arenaAlign - 1) / arenaAlign * arenaAlign }

// liveness is the plan's steps as package arena's liveness model sees
// them: every value a step reads (its inputs, and the values of the
// enclosing graph its subgraphs read) or writes (its outputs) numbered,
// each value's life, and which value each may view (filled in by
// planMemory: output 0 of an ops.ViewOfInput0 or MayViewInput0 node
// that is an intermediate views its input 0). Graph inputs and outputs
// are neither inputs nor pinned for the model: they never live in the
// arena (an output that would is excluded: see planMemory).
type liveness struct {
	ids    map[*ir.Value]int
	lives  []arena.Span
	viewOf []int
}

func newLiveness(p *plan) *liveness {
	lv := &liveness{ids: map[*ir.Value]int{}}
	id := func(v *ir.Value) int {
		i, ok := lv.ids[v]
		if !ok {
			i = len(lv.ids)
			lv.ids[v] = i
		}
		return i
	}
	steps := make([]arena.Step, len(p.steps))
	for i, s := range p.steps {
		n := s.node
		for _, v := range n.Inputs {
			if v != nil {
				steps[i].Reads = append(steps[i].Reads, id(v))
			}
		}
		for _, sg := range n.Subgraphs() {
			for _, v := range sg.OuterValues() {
				steps[i].Reads = append(steps[i].Reads, id(v))
			}
		}
		for _, o := range n.Outputs {
			if o != nil {
				steps[i].Writes = append(steps[i].Writes, id(o))
			}
		}
	}
	lv.lives = arena.Lives(steps, len(lv.ids), nil, nil)
	lv.viewOf = make([]int, len(lv.ids))
	for i := range lv.viewOf {
		lv.viewOf[i] = -1
	}
	return lv
}

// buffers returns the groups of top that are not excluded and their
// buffers for package arena, in the same order, live as package arena's
// liveness model says: each value owning a group (nested in a Concat's
// output or not) lives in the storage of its outermost group, and the
// values that view it keep it too.
func (lv *liveness) buffers(top []*group, owner map[*ir.Value]*group) ([]*group, []arena.Buffer) {
	var live []*group
	var sizes []int64
	index := map[*group]int{}
	for _, g := range top {
		if !g.excluded {
			index[g] = len(live)
			live = append(live, g)
			sizes = append(sizes, int64(g.size))
		}
	}
	storage := make([]int, len(lv.ids))
	for i := range storage {
		storage[i] = -1
	}
	for v, g := range owner {
		for g.parent != nil {
			g = g.parent
		}
		if s, ok := index[g]; ok {
			storage[lv.ids[v]] = s
		}
	}
	return live, arena.Buffers(lv.lives, storage, lv.viewOf, sizes)
}

// assignOffsets places the groups not excluded (live, and their buffers)
// in one arena with kiln's one memory planner (package arena, which the
// CUDA executor's device arenas use too) and returns its size.
func assignOffsets(live []*group, bufs []arena.Buffer) int {
	offs, total := arena.Place(bufs, arenaAlign)
	for i, g := range live {
		g.off = int(offs[i])
	}
	return int(total)
}

// inferAt infers the types of p's values with the graph inputs at the given
// shapes, on copies: the graph's own types are left as they are. It
// returns the copy of every step output, and false when there is nothing
// to plan (an input with a symbolic dimension and no max shapes at all).
func inferAt(p *plan, maxShapes map[string][]int, strict bool) (map[*ir.Value]*ir.Value, bool, error) {
	cp := map[*ir.Value]*ir.Value{}
	for _, v := range p.g.Inputs {
		c := &ir.Value{Name: v.Name, Type: v.Type.Clone()}
		if !v.Type.IsTensor() {
			cp[v] = c // a sequence or optional: nothing to plan
			continue
		}
		if s, ok := maxShapes[v.Name]; ok {
			c.Type.Shape = ir.KnownShape(s...)
		} else if !v.Type.Shape.FullyKnown() && v.Const == nil && len(maxShapes) == 0 {
			return nil, false, nil
		}
		cp[v] = c
	}
	view := func(v *ir.Value) *ir.Value {
		if v == nil {
			return nil
		}
		if c, ok := cp[v]; ok {
			return c
		}
		return v // initializers, folded constants
	}
	for _, s := range p.steps {
		n := s.node
		in := make([]*ir.Value, len(n.Inputs))
		for i, v := range n.Inputs {
			in[i] = view(v)
		}
		types, err := s.kernel.Infer(in)
		if err != nil {
			if strict {
				return nil, false, fmt.Errorf("%w: planning memory at the max shapes: node %q (%s): %w", ErrOption, n.Name, n.OpType, err)
			}
			types = nil
		}
		for j, o := range n.Outputs {
			if o == nil {
				continue
			}
			c := &ir.Value{Name: o.Name}
			if j < len(types) {
				c.Type = types[j]
			}
			if c.Type.DType == tensor.Undefined {
				c.Type.DType = o.Type.DType
			}
			if !c.Type.Shape.FullyKnown() && o.Type.Shape.FullyKnown() {
				c.Type.Shape = o.Type.Shape.Clone()
			}
			cp[o] = c
		}
		if err != nil || len(n.Outputs) == 0 || n.Outputs[0] == nil {
			continue
		}
		if sv, ok := s.kernel.(ops.ShapeValuer); ok {
			out := cp[n.Outputs[0]]
			out.ShapeValue = sv.ShapeValue(in)
			out.Const = shapeConst(out)
		}
		foldAt(n, s.kernel, in, cp)
	}
	return cp, true, nil
}

// shapeConst turns a fully known shape value into a constant, so that
// arithmetic on shapes (Div, Mul of dims) folds at the max shapes.
func shapeConst(v *ir.Value) *tensor.Tensor {
	if v.ShapeValue == nil || (v.Type.DType != tensor.Int64 && v.Type.DType != tensor.Int32) {
		return nil
	}
	dims, ok := ir.Shape(v.ShapeValue).Ints()
	if !ok {
		return nil
	}
	shape := []int{len(dims)}
	if s, ok := v.Type.Shape.Ints(); ok {
		if tensor.NumElements(s) != len(dims) {
			return nil
		}
		shape = s
	}
	t, err := tensor.Make(v.Type.DType, shape)
	if err != nil {
		return nil
	}
	for i, d := range dims {
		if v.Type.DType == tensor.Int64 {
			t.Int64s()[i] = int64(d)
		} else {
			t.Int32s()[i] = int32(d)
		}
	}
	return t
}

// foldAt computes the outputs of a node whose inputs are all small
// constants at the max shapes (as ops.InferGraph does at load time).
func foldAt(n *ir.Node, k ops.Kernel, in []*ir.Value, cp map[*ir.Value]*ir.Value) {
	if _, nd := k.(ops.NonDeterministic); nd || len(n.Subgraphs()) > 0 {
		return
	}
	total := 0
	args := make([]*tensor.Tensor, len(in))
	for i, v := range in {
		if v == nil {
			continue
		}
		if v.Const == nil {
			return
		}
		args[i] = v.Const
		total += v.Const.Len()
	}
	if total > maxFold {
		return
	}
	for _, o := range n.Outputs {
		if o == nil {
			continue
		}
		if _, _, ok := sizeOf(cp[o]); !ok || tensor.NumElements(mustInts(cp[o].Type.Shape)) > maxFold {
			return
		}
	}
	outs, err := runFold(k, args)
	if err != nil || len(outs) < len(n.Outputs) {
		return
	}
	for i, o := range n.Outputs {
		if o != nil && outs[i] != nil {
			c := cp[o]
			c.Const = outs[i]
			c.Type = ops.TypeOf(outs[i])
		}
	}
}

func mustInts(s ir.Shape) []int {
	d, _ := s.Ints()
	return d
}

// runFold runs a kernel at plan time, turning a panic into an error.
func runFold(k ops.Kernel, args []*tensor.Tensor) (outs []*tensor.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrKernel, r)
		}
	}()
	return k.Run(&ops.Env{Ctx: context.Background()}, args)
}

// SetArena makes c keep its arena in buf from its next run on: memory of
// the caller's, which the caller may use for other things between c's runs
// (a partitioned program's host arena, one for all its CPU segments: see
// engine/partition). buf must start at a multiple of tensor.Alignment (an
// offset package arena gave in memory from tensor.AlignedBytes). A run
// whose plan needs more than len(buf) makes c an arena of its own, as
// when c has none. It must not be called while c runs.
func (c *Context) SetArena(buf []byte) { c.arena = buf }

// ArenaIn reports whether c's arena lies in buf (see SetArena): false
// when c has none, or one of its own.
func (c *Context) ArenaIn(buf []byte) bool {
	if len(c.arena) == 0 || len(buf) == 0 {
		return false
	}
	lo, hi := uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&buf[0]))+uintptr(len(buf))
	p := uintptr(unsafe.Pointer(&c.arena[0]))
	return p >= lo && p+uintptr(len(c.arena)) <= hi
}

// outputsInto is where SetOutputs sends graph outputs: the memory of
// output j of step i, and a plan with no arena for the runs that have
// none (so that allocate is asked for outputs all the same).
type outputsInto struct {
	at   map[[2]int][]byte
	plan *memPlan
}

// SetOutputs makes c's runs write the named graph outputs into the given
// memory (the caller's, at multiples of tensor.Alignment) when the kernel
// that computes one asks for its output and it fits: a partitioned
// program's host tensors passed between segments, in its host arena (see
// engine/partition). An output that does not fit, or that its kernel does
// not allocate (a view of an input), is made as before: the caller checks
// where each output lies. Outputs in that memory are not copied out of it
// at the end of a run: they hold until the caller reuses it. Names that
// are not outputs computed by a node of the top-level graph are ignored;
// nil or empty stops it. It must not be called while c runs.
func (c *Context) SetOutputs(bufs map[string][]byte) {
	c.into = nil
	if len(bufs) == 0 {
		return
	}
	p := c.e.plans[c.e.graph]
	at := map[[2]int][]byte{}
	for i, s := range p.steps {
		for j, o := range s.node.Outputs {
			if o == nil || !p.keep[o] || !slices.Contains(c.e.graph.Outputs, o) {
				continue
			}
			if b, ok := bufs[o.Name]; ok && len(b) > 0 {
				at[[2]int{i, j}] = b
			}
		}
	}
	if len(at) == 0 {
		return
	}
	// the plan of a run without arena: no slots, nothing accepted in it
	m := &memPlan{slots: make([][]slot, len(p.steps)), accept: make([][][]span, len(p.steps)), copyOut: make([][]bool, len(p.steps))}
	for i, s := range p.steps {
		n := len(s.node.Outputs)
		m.slots[i], m.accept[i], m.copyOut[i] = make([]slot, n), make([][]span, n), make([]bool, n)
	}
	c.into = &outputsInto{at: at, plan: m}
}

// intoOutput returns output j of the running step over the memory
// SetOutputs gave it, or nil when it has none or the request does not fit.
func (c *Context) intoOutput(j int, dt tensor.DType, shape []int) *tensor.Tensor {
	if c.into == nil {
		return nil
	}
	b, ok := c.into.at[[2]int{c.step, j}]
	if !ok || tensor.CheckShape(shape) != nil || !dt.Valid() || dt == tensor.String {
		return nil
	}
	n := tensor.NumElements(shape) * dt.Size()
	if n > len(b) {
		return nil
	}
	return c.arenaTensor(j, dt, shape, b[:n:n])
}
