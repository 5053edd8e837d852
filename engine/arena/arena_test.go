package arena

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kilnai/kiln/engine/arena/arenatest"
)

// check fails when two buffers live at once share bytes, or one is
// misaligned or outside the arena.
func check(t *testing.T, bufs []Buffer, align int64, off []int64, total int64) {
	t.Helper()
	if len(off) != len(bufs) {
		t.Fatalf("%d offsets for %d buffers", len(off), len(bufs))
	}
	for i, a := range bufs {
		if off[i] < 0 || off[i]%max(align, 1) != 0 || off[i]+Align(a.Size, align) > total {
			t.Fatalf("buffer %d (%+v) at %d: misaligned or outside the arena of %d", i, a, off[i], total)
		}
		for j, b := range bufs[:i] {
			if a.overlaps(b) && off[i] < off[j]+b.Size && off[j] < off[i]+a.Size {
				t.Fatalf("buffers %d %+v at %d and %d %+v at %d live together and share bytes", j, b, off[j], i, a, off[i])
			}
		}
	}
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name  string
		bufs  []Buffer
		align int64
		total int64
	}{
		{"empty", nil, 256, 0},
		{"one", []Buffer{{100, 0, 1}}, 256, 256},
		{"chain reuses", []Buffer{{1000, -1, 0}, {1000, 0, 1}, {1000, 1, 2}, {1000, 2, 3}}, 256, 2 * 1024},
		{"all live", []Buffer{{300, 0, 5}, {300, 1, 5}, {300, 2, 5}}, 256, 3 * 512},
		{"residual kept", []Buffer{{256, -1, 3}, {256, 0, 1}, {256, 1, 2}, {256, 2, 3}}, 256, 3 * 256},
		{"small fits in a gap", []Buffer{{512, 0, 1}, {2048, 0, 3}, {256, 2, 3}, {512, 1, 2}}, 256, 2048 + 512 + 512},
		{"zero size takes nothing", []Buffer{{0, 0, 9}, {64, 0, 1}, {64, 2, 3}}, 64, 64},
		{"no alignment", []Buffer{{3, 0, 1}, {5, 1, 2}, {7, 2, 3}}, 1, 12},
		// the peak (600) is reached: taken in their own order, 700
		{"interleaved lifetimes", []Buffer{{100, 0, 1}, {200, 0, 1}, {100, 0, 5}, {100, 2, 3}, {200, 4, 5}, {300, 3, 5}}, 1, 600},
		// largest area (bytes x steps) first reaches the peak (10): the
		// former packers, by size or start or lifetime, gave 11
		{"area order", []Buffer{{4, 1, 3}, {4, 2, 3}, {5, 1, 1}, {2, 3, 6}}, 1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off, total := Place(tt.bufs, tt.align)
			check(t, tt.bufs, tt.align, off, total)
			if total != tt.total {
				t.Errorf("arena %d bytes, want %d (offsets %v)", total, tt.total, off)
			}
			if p := PeakLive(tt.bufs, tt.align); total < p {
				t.Errorf("arena %d bytes below the peak live %d", total, p)
			}
		})
	}
}

// TestPlaceRandom: on random lifetimes (short and long, small and large
// buffers, with and without alignment), the placement is valid, never
// below the peak of live bytes, never above either packer Place replaced
// (arenatest.CPU, the CPU engine's best fits, and arenatest.GPU, the CUDA
// executor's first fit, kept as they were), and the same on every call.
func TestPlaceRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var atPeak, belowBoth int
	const trials = 600
	for trial := range trials {
		n := 1 + r.IntN(60)
		steps := 1 + r.IntN(40)
		maxSize := []int{64, 5000, 1 << 20}[trial%3]
		bufs := make([]Buffer, n)
		ref := make([]arenatest.Buffer, n)
		for i := range bufs {
			first := r.IntN(steps+1) - 1
			span := r.IntN(steps)
			if trial%4 == 0 {
				span = r.IntN(3) // mostly short lives, as in a chain
			}
			bufs[i] = Buffer{Size: int64(r.IntN(maxSize)), First: first, Last: max(first+span, 0)}
			ref[i] = arenatest.Buffer(bufs[i])
		}
		align := []int64{1, 64, 256, 7}[trial%4]
		off, total := Place(bufs, align)
		check(t, bufs, align, off, total)
		p := PeakLive(bufs, align)
		if total < p {
			t.Fatalf("trial %d: arena %d below the peak live %d", trial, total, p)
		}
		_, cpu := arenatest.CPU(ref, align)
		_, gpu := arenatest.GPU(ref, align)
		if total > cpu || total > gpu {
			t.Fatalf("trial %d: arena %d above a former packer's (CPU best fits %d, GPU first fit %d)", trial, total, cpu, gpu)
		}
		if total == p {
			atPeak++
		}
		if total < min(cpu, gpu) {
			belowBoth++
		}
		off2, total2 := Place(bufs, align)
		if total2 != total || !slices.Equal(off, off2) {
			t.Fatalf("trial %d: a second Place differs", trial)
		}
	}
	t.Logf("%d trials: %d at the peak live, %d smaller than both former packers", trials, atPeak, belowBoth)
}

func TestPeakLive(t *testing.T) {
	for _, tt := range []struct {
		bufs []Buffer
		want int64
	}{
		{nil, 0},
		{[]Buffer{{10, 0, 0}, {20, 1, 1}}, 20},             // one after the other
		{[]Buffer{{10, 0, 1}, {20, 1, 1}}, 30},             // step 1 shared
		{[]Buffer{{10, -1, 0}, {20, 0, 2}, {5, 3, 4}}, 30}, // an input
	} {
		if got := PeakLive(tt.bufs, 1); got != tt.want {
			t.Errorf("PeakLive(%v) = %d, want %d", tt.bufs, got, tt.want)
		}
	}
}

// TestPlaceBeatsFormer: on the "area order" buffers of TestPlace, both
// former packers give 11 bytes where Place gives the peak, 10.
func TestPlaceBeatsFormer(t *testing.T) {
	b := []Buffer{{4, 1, 3}, {4, 2, 3}, {5, 1, 1}, {2, 3, 6}}
	bufs := make([]arenatest.Buffer, len(b))
	for i, x := range b {
		bufs[i] = arenatest.Buffer(x)
	}
	_, cpu := arenatest.CPU(bufs, 1)
	_, gpu := arenatest.GPU(bufs, 1)
	if _, got := Place(b, 1); cpu != 11 || gpu != 11 || got != 10 {
		t.Errorf("former CPU %d, GPU %d, Place %d: want 11, 11, 10", cpu, gpu, got)
	}
}
