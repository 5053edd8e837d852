package partition

import (
	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/engine"
	"github.com/kilnai/kiln/engine/arena"
	"github.com/kilnai/kiln/tensor"
)

// hostArena is the host memory a program context's CPU segments keep
// their activations in: one block, packed by package arena as any arena
// is, each CPU segment's engine context at an offset of its own, live
// only while its segment runs. Segments run one after the other, so they
// share bytes: the CPU activations take the largest segment's arena
// instead of the sum of all. (The host tensors passed between segments
// are not in it: each segment's program still allocates its outputs.)
type hostArena struct{ buf []byte }

// replan, after a run, moves the CPU segments' engine contexts into one
// new host arena when one of them made an arena of its own (its first
// run, or a run that needed more than its room): each keeps the size it
// now has, at the offset package arena gives it. Nothing moves while
// fewer than two CPU segments have an arena (nothing to share).
func (h *hostArena) replan(segs []device.ProgramContext) {
	var ctxs []*engine.Context
	var bufs []arena.Buffer
	moved := false
	for i, s := range segs {
		cc, ok := s.(cpuContext)
		if !ok || cc.c.ArenaBytes() == 0 {
			continue
		}
		moved = moved || !cc.c.ArenaIn(h.buf)
		ctxs = append(ctxs, cc.c)
		bufs = append(bufs, arena.Buffer{Size: int64(cc.c.ArenaBytes()), First: i, Last: i})
	}
	if !moved || len(ctxs) < 2 {
		return
	}
	offs, total := arena.Place(bufs, tensor.Alignment)
	h.buf = nil // the old block may go before the new one is made
	h.buf = tensor.AlignedBytes(int(total))
	for j, c := range ctxs {
		lo, hi := offs[j], offs[j]+bufs[j].Size
		c.SetArena(h.buf[lo:hi:hi])
	}
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
// partitioned (its NewContext): the bytes of the one arena its CPU
// segments share, and what their arenas take apart (their sum, what they
// held before they shared one). ok is false for a context of another
// kind.
func HostArena(c device.ProgramContext) (shared, apart int64, ok bool) {
	pc, ok := c.(*programContext)
	if !ok {
		return 0, 0, false
	}
	for _, s := range pc.segs {
		if cc, ok := s.(cpuContext); ok {
			apart += int64(cc.c.ArenaBytes())
		}
	}
	return int64(len(pc.host.buf)), apart, true
}
