// Package arenatest keeps the two packers that package arena replaced, as
// they were, for tests to compare arena.Place against: the CPU engine's
// (engine/memplan.go: best fit in three orders, the smallest arena kept)
// and the CUDA executor's (device/cuda/gpuexec/memplan.go: first fit,
// largest first). Place must never give a larger arena than either on the
// same buffers. Nothing outside tests should use it.
package arenatest

import (
	"cmp"
	"slices"
	"sort"
)

// Buffer is arena.Buffer (a copy, so that package arena's own tests may
// import this package): Size bytes live from step First to step Last.
type Buffer struct {
	Size        int64
	First, Last int
}

func (a Buffer) overlaps(b Buffer) bool { return a.First <= b.Last && b.First <= a.Last }

func alignUp(n, align int64) int64 {
	if align <= 1 {
		return n
	}
	return (n + align - 1) / align * align
}

// CPU is the CPU engine's former assignOffsets: each buffer in the
// smallest gap left by the buffers placed before it that live at the same
// time (best fit), in three orders (largest first, longest-lived first,
// earliest first), the smallest arena kept.
func CPU(bufs []Buffer, align int64) (offsets []int64, total int64) {
	idx := make([]int, len(bufs))
	for i := range idx {
		idx[i] = i
	}
	bySize := func(a, b int) int {
		return cmp.Or(cmp.Compare(bufs[b].Size, bufs[a].Size), cmp.Compare(bufs[a].First, bufs[b].First))
	}
	orders := []func(a, b int) int{
		bySize,
		func(a, b int) int {
			return cmp.Or(cmp.Compare(bufs[b].Last-bufs[b].First, bufs[a].Last-bufs[a].First), bySize(a, b))
		},
		func(a, b int) int { return cmp.Or(cmp.Compare(bufs[a].First, bufs[b].First), bySize(a, b)) },
	}
	best := int64(-1)
	offsets = make([]int64, len(bufs))
	offs := make([]int64, len(bufs))
	for _, order := range orders {
		ord := slices.Clone(idx)
		slices.SortStableFunc(ord, order)
		if t := placeBestFit(bufs, ord, align, offs); best < 0 || t < best {
			best = t
			copy(offsets, offs)
		}
	}
	return offsets, max(best, 0)
}

func placeBestFit(bufs []Buffer, order []int, align int64, offs []int64) int64 {
	var total int64
	var placed []int
	for _, i := range order {
		size := alignUp(bufs[i].Size, align)
		var busy []int
		for _, q := range placed {
			if bufs[q].overlaps(bufs[i]) {
				busy = append(busy, q)
			}
		}
		slices.SortFunc(busy, func(a, b int) int { return cmp.Compare(offs[a], offs[b]) })
		at, bestGap, prev := int64(-1), int64(0), int64(0)
		for _, q := range busy {
			if gap := offs[q] - prev; gap >= size && (at < 0 || gap < bestGap) {
				at, bestGap = prev, gap
			}
			prev = max(prev, offs[q]+alignUp(bufs[q].Size, align))
		}
		if at < 0 {
			at = prev
		}
		offs[i] = at
		placed = append(placed, i)
		total = max(total, at+size)
	}
	return total
}

// GPU is the CUDA executor's former planOffsets: buffers largest first,
// each at the lowest aligned offset free for its whole lifetime.
func GPU(bufs []Buffer, align int64) (offsets []int64, total int64) {
	order := make([]int, len(bufs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return bufs[order[a]].Size > bufs[order[b]].Size })
	offsets = make([]int64, len(bufs))
	var placed []int
	type span struct{ lo, hi int64 }
	for _, i := range order {
		b := bufs[i]
		size := alignUp(b.Size, align)
		var busy []span
		for _, j := range placed {
			if bufs[j].overlaps(b) {
				busy = append(busy, span{offsets[j], offsets[j] + alignUp(bufs[j].Size, align)})
			}
		}
		sort.Slice(busy, func(x, y int) bool { return busy[x].lo < busy[y].lo })
		off := int64(0)
		for _, s := range busy {
			if off+size <= s.lo {
				break
			}
			if s.hi > off {
				off = s.hi
			}
		}
		offsets[i] = off
		total = max(total, off+size)
		placed = append(placed, i)
	}
	return offsets, total
}
