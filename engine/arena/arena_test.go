package arena

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
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

// TestPlaceRandom: on random lifetimes, the placement is valid, never below
// the peak of live bytes, never above any one heuristic alone (the CUDA
// executor's former first fit, the CPU engine's former best fits), and
// the same on every call.
func TestPlaceRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		n := 1 + r.IntN(40)
		steps := 1 + r.IntN(30)
		bufs := make([]Buffer, n)
		for i := range bufs {
			first := r.IntN(steps+1) - 1
			bufs[i] = Buffer{Size: int64(r.IntN(5000)), First: first, Last: first + r.IntN(steps)}
			if bufs[i].Last < 0 {
				bufs[i].Last = 0
			}
		}
		align := []int64{1, 64, 256}[trial%3]
		off, total := Place(bufs, align)
		check(t, bufs, align, off, total)
		if p := PeakLive(bufs, align); total < p {
			t.Fatalf("trial %d: arena %d below the peak live %d", trial, total, p)
		}
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		size := func(i int) int64 { return Align(bufs[i].Size, align) }
		largest := slices.Clone(idx)
		slices.SortStableFunc(largest, func(a, b int) int { return cmp.Compare(bufs[b].Size, bufs[a].Size) })
		for name, fit := range map[string]func([]int, func(int) int64, []int64) int64{"first fit": firstFit(bufs), "best fit": bestFit(bufs)} {
			if alone := fit(largest, size, make([]int64, n)); total > alone {
				t.Fatalf("trial %d: arena %d above %s largest first alone (%d)", trial, total, name, alone)
			}
		}
		off2, total2 := Place(bufs, align)
		if total2 != total || !slices.Equal(off, off2) {
			t.Fatalf("trial %d: a second Place differs", trial)
		}
	}
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
