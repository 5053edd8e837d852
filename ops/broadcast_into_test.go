package ops

import (
	"slices"
	"testing"
)

// TestBroadcastInto checks the allocation-free broadcast helpers against
// BroadcastShape and BroadcastStrides.
func TestBroadcastInto(t *testing.T) {
	for _, c := range []struct{ a, b []int }{
		{[]int{}, []int{}},
		{[]int{3}, []int{}},
		{[]int{}, []int{2, 3}},
		{[]int{2, 3}, []int{2, 3}},
		{[]int{2, 1}, []int{1, 3}},
		{[]int{1, 1, 1, 128}, []int{1}},
		{[]int{1, 4, 128, 128}, []int{1, 1, 1, 128}},
		{[]int{4, 1, 5}, []int{3, 1}},
		{[]int{0, 3}, []int{1, 3}},
		{[]int{2, 3}, []int{3, 3}}, // not broadcastable
		{[]int{2}, []int{3}},       // not broadcastable
		{[]int{0}, []int{2}},       // not broadcastable
	} {
		want, err := BroadcastShape(c.a, c.b)
		var buf [8]int
		got, ok := BroadcastShapeInto(buf[:], c.a, c.b)
		if ok != (err == nil) || ok && !slices.Equal(got, want) {
			t.Errorf("BroadcastShapeInto(%v, %v) = %v, %v; BroadcastShape: %v, %v", c.a, c.b, got, ok, want, err)
		}
		if err != nil {
			continue
		}
		for _, in := range [][]int{c.a, c.b} {
			st := make([]int, len(want))
			for i := range st {
				st[i] = -7 // overwritten
			}
			BroadcastStridesInto(st, in, want)
			if w := BroadcastStrides(in, want); !slices.Equal(st, w) {
				t.Errorf("BroadcastStridesInto(%v -> %v) = %v, want %v", in, want, st, w)
			}
			if !BroadcastsTo(in, want) {
				t.Errorf("BroadcastsTo(%v, %v) = false, want true", in, want)
			}
		}
		if len(want) > 0 && !slices.Equal(c.a, want) && BroadcastsTo(want, c.a) {
			t.Errorf("BroadcastsTo(%v, %v) = true, want false (enlarges)", want, c.a)
		}
	}
}
