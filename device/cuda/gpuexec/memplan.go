package gpuexec

import "sort"

// Alignment is the byte alignment of every tensor in the device buffers.
const Alignment = 256

func align(n int64) int64 { return (n + Alignment - 1) / Alignment * Alignment }

// interval is the lifetime of one buffer: it is written by step first (-1
// for a graph input) and last read by step last (inclusive).
type interval struct {
	size        int64
	first, last int
}

func (a interval) overlaps(b interval) bool { return a.first <= b.last && b.first <= a.last }

// planOffsets gives each buffer an offset in one arena such that buffers
// whose lifetimes overlap do not share bytes, and returns the arena's size.
// Buffers are placed largest first, each at the lowest aligned offset that
// is free for its whole lifetime (first fit).
func planOffsets(bufs []interval) (offsets []int64, total int64) {
	order := make([]int, len(bufs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return bufs[order[a]].size > bufs[order[b]].size })
	offsets = make([]int64, len(bufs))
	var placed []int
	for _, i := range order {
		b := bufs[i]
		size := align(b.size)
		// The busy ranges of the placed buffers that live at the same time.
		type span struct{ lo, hi int64 }
		var busy []span
		for _, j := range placed {
			if bufs[j].overlaps(b) {
				busy = append(busy, span{offsets[j], offsets[j] + align(bufs[j].size)})
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
