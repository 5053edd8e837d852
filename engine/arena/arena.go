// Package arena places buffers whose lifetimes are known in one block of
// memory (an arena), so that buffers that are never live at the same time
// share bytes. It is kiln's one memory planner for every device: the CPU
// engine places its activations with it in a host arena (package engine),
// the CUDA executor its values in a device arena (device/cuda/gpuexec).
// What a buffer is, how long it lives and how big it is at a profile's
// largest shapes is the caller's business; Place only packs.
//
// Place tries several heuristics and keeps the smallest arena: best fit
// (each buffer in the smallest gap that holds it among those placed
// before it that live at the same time) with the buffers taken largest
// first, longest-lived first, earliest first and largest area (bytes
// times steps) first, then first fit (the lowest gap) largest first and
// largest area first. The first three are the CPU engine's former packer,
// the fourth the CUDA executor's (both kept in package arenatest, which
// the tests compare against), so Place never gives a larger arena than
// either did; the area orders are new. Finding the smallest arena is
// NP-hard; these stay within a few percent of the peak of live bytes
// (PeakLive, a lower bound) on kiln's models.
package arena

import (
	"cmp"
	"slices"
	"sort"
)

// Buffer is one allocation: Size bytes, live from step First to step Last
// (inclusive; First may be -1 for a value given before the first step).
type Buffer struct {
	Size        int64
	First, Last int
}

// overlaps reports whether a and b are live at a common step.
func (a Buffer) overlaps(b Buffer) bool { return a.First <= b.Last && b.First <= a.Last }

// Align rounds n up to a multiple of align (align <= 1: n).
func Align(n, align int64) int64 {
	if align <= 1 {
		return n
	}
	return (n + align - 1) / align * align
}

// Place returns the offset of each buffer in one arena, each a multiple of
// align, such that buffers whose lifetimes overlap do not share bytes
// (each takes its Size rounded up to align), and the arena's size: the
// smallest of the heuristics the package describes. The result depends
// only on bufs and align.
func Place(bufs []Buffer, align int64) (offsets []int64, total int64) {
	idx := make([]int, len(bufs))
	for i := range idx {
		idx[i] = i
	}
	size := func(i int) int64 { return Align(bufs[i].Size, align) }
	bySize := func(a, b int) int {
		return cmp.Or(cmp.Compare(bufs[b].Size, bufs[a].Size), cmp.Compare(bufs[a].First, bufs[b].First))
	}
	type strategy struct {
		order func(a, b int) int
		fit   func(order []int, size func(int) int64, offs []int64) int64
	}
	// area: bytes times steps, the buffer's share of the arena's
	// (size x time) rectangle
	area := func(i int) int64 { return int64(bufs[i].Last-bufs[i].First+1) * bufs[i].Size }
	byArea := func(a, b int) int { return cmp.Or(cmp.Compare(area(b), area(a)), bySize(a, b)) }
	strategies := []strategy{
		{bySize, bestFit(bufs)},
		{func(a, b int) int {
			la, lb := bufs[a].Last-bufs[a].First, bufs[b].Last-bufs[b].First
			return cmp.Or(cmp.Compare(lb, la), bySize(a, b))
		}, bestFit(bufs)},
		{func(a, b int) int { return cmp.Or(cmp.Compare(bufs[a].First, bufs[b].First), bySize(a, b)) }, bestFit(bufs)},
		{func(a, b int) int { return cmp.Compare(bufs[b].Size, bufs[a].Size) }, firstFit(bufs)},
		{byArea, bestFit(bufs)},
		{byArea, firstFit(bufs)},
	}
	offsets = make([]int64, len(bufs))
	best := int64(-1)
	offs := make([]int64, len(bufs))
	for _, s := range strategies {
		order := slices.Clone(idx)
		slices.SortStableFunc(order, s.order)
		if t := s.fit(order, size, offs); best < 0 || t < best {
			best = t
			copy(offsets, offs)
		}
	}
	return offsets, max(best, 0)
}

// bestFit places the buffers in order, each in the smallest gap that holds
// it among the buffers placed before it that live at the same time, or
// above them all.
func bestFit(bufs []Buffer) func(order []int, size func(int) int64, offs []int64) int64 {
	return func(order []int, size func(int) int64, offs []int64) int64 {
		var total int64
		var placed, busy []int
		for _, i := range order {
			sz := size(i)
			busy = busy[:0]
			for _, q := range placed {
				if bufs[q].overlaps(bufs[i]) {
					busy = append(busy, q)
				}
			}
			slices.SortFunc(busy, func(a, b int) int { return cmp.Compare(offs[a], offs[b]) })
			at, bestGap, prev := int64(-1), int64(0), int64(0)
			for _, q := range busy {
				if gap := offs[q] - prev; gap >= sz && (at < 0 || gap < bestGap) {
					at, bestGap = prev, gap
				}
				prev = max(prev, offs[q]+size(q))
			}
			if at < 0 {
				at = prev
			}
			offs[i] = at
			placed = append(placed, i)
			total = max(total, at+sz)
		}
		return total
	}
}

// firstFit places the buffers in order, each at the lowest offset free
// for its whole lifetime.
func firstFit(bufs []Buffer) func(order []int, size func(int) int64, offs []int64) int64 {
	return func(order []int, size func(int) int64, offs []int64) int64 {
		var total int64
		type span struct{ lo, hi int64 }
		var placed []int
		var busy []span
		for _, i := range order {
			sz := size(i)
			busy = busy[:0]
			for _, q := range placed {
				if bufs[q].overlaps(bufs[i]) {
					busy = append(busy, span{offs[q], offs[q] + size(q)})
				}
			}
			sort.Slice(busy, func(x, y int) bool { return busy[x].lo < busy[y].lo })
			at := int64(0)
			for _, s := range busy {
				if at+sz <= s.lo {
					break
				}
				at = max(at, s.hi)
			}
			offs[i] = at
			placed = append(placed, i)
			total = max(total, at+sz)
		}
		return total
	}
}

// PeakLive returns the largest sum of the sizes (rounded up to align) of
// the buffers live at one step: no placement makes the arena smaller.
func PeakLive(bufs []Buffer, align int64) int64 {
	type event struct {
		step  int
		delta int64
	}
	ev := make([]event, 0, 2*len(bufs))
	for _, b := range bufs {
		sz := Align(b.Size, align)
		ev = append(ev, event{b.First, sz}, event{b.Last + 1, -sz})
	}
	// at one step, buffers that end before it leave before those that
	// start at it arrive
	slices.SortFunc(ev, func(a, b event) int { return cmp.Or(cmp.Compare(a.step, b.step), cmp.Compare(a.delta, b.delta)) })
	var peak, cur int64
	for _, e := range ev {
		cur += e.delta
		peak = max(peak, cur)
	}
	return peak
}
