package gpuexec

import "github.com/kilnai/kiln/engine/arena"

// Alignment is the byte alignment of every tensor in the device buffers.
const Alignment = 256

func align(n int64) int64 { return arena.Align(n, Alignment) }

// interval is the lifetime of one buffer: it is written by step first (-1
// for a graph input) and last read by step last (inclusive).
type interval struct {
	size        int64
	first, last int
}

func (a interval) overlaps(b interval) bool { return a.first <= b.last && b.first <= a.last }

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
