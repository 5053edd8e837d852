package partition

import (
	"context"
	"unsafe"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/arena"
	"github.com/kilnai/kiln/tensor"
)

// hostArena is the host memory of a program context: one block, packed
// by package arena as any arena is, holding each CPU segment's engine
// arena (live only while its segment runs) and the host tensors the
// segments pass to later segments (live from the segment that computes
// one to the last that reads it, unless it is a graph output, which the
// caller keeps): a CPU segment's, and a device segment's whose context
// takes memory for its outputs (device.OutputsInto; the tensors other
// device contexts pass on are their own). Segments run one after the
// other, so a segment's arena shares bytes with the other segments' and
// with the tensors not live while it runs.
type hostArena struct {
	buf []byte
	// slots are the tensors passed on in buf, by value name: bytes
	// [lo, hi) of buf
	slots map[string][2]int
	// sizes are the bytes of the tensors the segments that take memory
	// for their outputs (CPU segments, device.OutputsInto) passed on,
	// the most seen, by value name
	sizes map[string]int
	// refused are the tensors passed on that a run made outside the slot
	// they had (a kernel that allocates its outputs itself, a view): no
	// slot is kept for them
	refused map[string]bool
	// items is replan's list, kept for the next
	items []placed
}

// placed is one thing replan places in the host arena.
type placed struct {
	ctx  *engine.Context // a CPU segment's arena, or
	name string          // a tensor passed on
	seg  int             // the segment that runs in it or computes it
	size int             // its bytes
}

// runner returns segment i of c with its outputs checked by h.
func (h *hostArena) runner(c *programContext, i int) segmentRunner {
	return hostRunner{h: h, c: c, i: i}
}

type hostRunner struct {
	h *hostArena
	c *programContext
	i int
}

// Run runs the segment, then copies out of the host arena any output that
// lies in it outside the slot planned for it (a view of an input that
// lies there, a graph output) and notes the sizes of the outputs that
// later segments read of a segment that takes memory for them.
func (r hostRunner) Run(ctx context.Context, in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	out, err := r.c.segs[r.i].Run(ctx, in)
	if err != nil {
		return nil, err
	}
	_, into := r.c.segs[r.i].(device.OutputsInto)
	for name, t := range out {
		if t == nil || len(t.Data) == 0 {
			continue
		}
		lo, hi, there := within(r.h.buf, t.Data)
		s, planned := r.h.slots[name]
		inSlot := there && planned && lo >= s[0] && hi <= s[1]
		if there && !inSlot {
			out[name] = t.Clone()
		}
		if planned && !inSlot && len(t.Data) <= s[1]-s[0] { // it fit, yet is elsewhere
			if r.h.refused == nil {
				r.h.refused = map[string]bool{}
			}
			r.h.refused[name] = true
		}
		if into && r.c.p.passedOn(r.i, name) >= 0 {
			if r.h.sizes == nil {
				r.h.sizes = map[string]int{}
			}
			r.h.sizes[name] = max(r.h.sizes[name], len(t.Data))
		}
	}
	return out, nil
}

// within returns the byte range of data in buf, if data overlaps buf.
func within(buf, data []byte) (lo, hi int, ok bool) {
	if len(buf) == 0 || len(data) == 0 {
		return 0, 0, false
	}
	base := uintptr(unsafe.Pointer(&buf[0]))
	p := uintptr(unsafe.Pointer(&data[0]))
	end := p + uintptr(len(data))
	if end <= base || p >= base+uintptr(len(buf)) {
		return 0, 0, false
	}
	return int(p - base), int(end - base), true
}

// passedOn returns the last segment after segment i that reads the value
// name computed by i, or -1 when none does or the value is a graph output
// (returned to the caller, so never in a context's memory).
func (p *program) passedOn(i int, name string) int {
	for _, o := range p.outputs {
		if o.name == name {
			return -1
		}
	}
	last := -1
	for k := i + 1; k < len(p.segs); k++ {
		for _, in := range p.segs[k].inputs {
			if in == name {
				last = k
			}
		}
	}
	return last
}

// replan, after a run, places the CPU segments' engine arenas and the
// tensors the segments that take memory for their outputs (CPU segments,
// device.OutputsInto) pass on in one new host arena when the last one no longer
// holds them (a segment made an arena of its own: its first run, or a run
// that needed more than its room; a tensor passed on grew or is new),
// each at the size it now has, and points the engine contexts there.
// Nothing moves while there are fewer than two things to place.
func (h *hostArena) replan(c *programContext) {
	items := h.items[:0] // kept from run to run: no allocation when nothing moves
	defer func() { h.items = items[:0] }()
	moved := false
	for i, s := range c.segs {
		if cc, ok := s.(cpuContext); ok {
			if n := cc.c.ArenaBytes(); n > 0 {
				moved = moved || !cc.c.ArenaIn(h.buf)
				items = append(items, placed{ctx: cc.c, seg: i, size: n})
			}
		}
		if _, ok := s.(device.OutputsInto); !ok {
			continue
		}
		for _, name := range c.p.segs[i].outputs {
			n := h.sizes[name]
			if h.refused[name] {
				_, had := h.slots[name]
				moved = moved || had // give its slot back
				continue
			}
			if n == 0 || c.p.passedOn(i, name) < 0 {
				continue
			}
			s, ok := h.slots[name]
			moved = moved || !ok || s[1]-s[0] < n
			items = append(items, placed{name: name, seg: i, size: n})
		}
	}
	if !moved || (len(items) < 2 && len(h.slots) == 0) {
		return
	}
	bufs := buffers(c.p, items)
	offs, total := arena.Place(bufs, tensor.Alignment)
	h.buf = nil // the old block may go before the new one is made
	h.buf = tensor.AlignedBytes(int(total))
	h.slots = map[string][2]int{}
	into := map[int]map[string][]byte{}
	for j, it := range items {
		lo, hi := int(offs[j]), int(offs[j]+bufs[j].Size)
		if it.ctx != nil {
			it.ctx.SetArena(h.buf[lo:hi:hi])
			continue
		}
		h.slots[it.name] = [2]int{lo, hi}
		if into[it.seg] == nil {
			into[it.seg] = map[string][]byte{}
		}
		into[it.seg][it.name] = h.buf[lo:hi:hi]
	}
	for i, s := range c.segs {
		if o, ok := s.(device.OutputsInto); ok {
			o.SetOutputs(into[i])
		}
	}
}

// buffers returns the buffers of the things replan places, in order, live
// as package arena's liveness model says, the program's segments being
// its steps: a CPU segment's arena is written by its segment only, a
// tensor passed on by the segment that computes it and read by every
// segment that takes it as an input (each thing a value in a storage of
// its own).
func buffers(p *program, items []placed) []arena.Buffer {
	steps := make([]arena.Step, len(p.segs))
	sizes := make([]int64, len(items))
	tensors := map[string]int{}
	for j, it := range items {
		sizes[j] = int64(it.size)
		steps[it.seg].Writes = append(steps[it.seg].Writes, j)
		if it.ctx == nil {
			tensors[it.name] = j
		}
	}
	for k, s := range p.segs {
		for _, in := range s.inputs {
			if j, ok := tensors[in]; ok {
				steps[k].Reads = append(steps[k].Reads, j)
			}
		}
	}
	return arena.Buffers(arena.Lives(steps, len(items), nil, nil), nil, nil, sizes)
}

// bytes is the memory of a program context's segments: the host arena
// once, and every segment context's memory outside it.
func (h *hostArena) bytes(segs []device.ProgramContext) int64 {
	n := int64(len(h.buf))
	for _, s := range segs {
		if s == nil {
			continue
		}
		if cc, ok := s.(cpuContext); ok && cc.c.ArenaIn(h.buf) {
			continue
		}
		n += s.ArenaBytes()
	}
	return n
}

// HostArena reports the host memory of c, a context of a program Compile
// partitioned (its NewContext): the bytes of its host arena, and what
// the things in it take apart (the CPU segments' arenas and the tensors
// the segments pass on that are in it, summed: what they held, or
// allocated on every run, before they shared one). ok is false for a
// context of another kind.
func HostArena(c device.ProgramContext) (shared, apart int64, ok bool) {
	pc, ok := c.(*programContext)
	if !ok {
		return 0, 0, false
	}
	for _, s := range pc.segs {
		if cc, ok := s.(cpuContext); ok && cc.c.ArenaIn(pc.host.buf) {
			apart += int64(cc.c.ArenaBytes())
		}
	}
	for _, s := range pc.host.slots {
		apart += int64(s[1] - s[0])
	}
	return int64(len(pc.host.buf)), apart, true
}

// DeviceArena reports the device memory of c, a context of a program
// Compile partitioned: what its device segments' contexts hold for
// intermediates (their ArenaBytes, an arena they share counted once: see
// device.SharedArena) and what they would hold apart (ArenaAlone where a
// context shares, ArenaBytes otherwise). ok is false for a context of
// another kind.
func DeviceArena(c device.ProgramContext) (shared, apart int64, ok bool) {
	pc, ok := c.(*programContext)
	if !ok {
		return 0, 0, false
	}
	for _, s := range pc.segs {
		if _, cpu := s.(cpuContext); cpu || s == nil {
			continue
		}
		shared += s.ArenaBytes()
		if sa, ok := s.(device.SharedArena); ok {
			apart += sa.ArenaAlone()
		} else {
			apart += s.ArenaBytes()
		}
	}
	return shared, apart, true
}
