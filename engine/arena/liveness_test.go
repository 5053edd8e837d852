package arena

import (
	"slices"
	"testing"
)

// TestLives: each value's life from the steps that read and write it,
// inputs and pinned values.
func TestLives(t *testing.T) {
	tests := []struct {
		name           string
		steps          []Step
		n              int
		inputs, pinned []int
		want           []Span
	}{
		{"chain", []Step{{Writes: []int{0}}, {Reads: []int{0}, Writes: []int{1}}, {Reads: []int{1}, Writes: []int{2}}}, 3, nil, nil,
			[]Span{{0, 1}, {1, 2}, {2, 2}}},
		{"input lives from -1", []Step{{Reads: []int{0}, Writes: []int{1}}, {Reads: []int{1}}}, 2, []int{0}, nil,
			[]Span{{-1, 0}, {0, 1}}},
		{"input never read", []Step{{Writes: []int{1}}}, 2, []int{0}, nil,
			[]Span{{-1, -1}, {0, 0}}},
		{"never read: its write step only", []Step{{Writes: []int{0}}, {Writes: []int{1}}, {Reads: []int{1}}}, 2, nil, nil,
			[]Span{{0, 0}, {1, 2}}},
		{"never accessed: not live", []Step{{Writes: []int{0}}}, 2, nil, nil,
			[]Span{{0, 0}, {0, -1}}},
		{"pinned lives to len(steps)", []Step{{Writes: []int{0}}, {Reads: []int{0}, Writes: []int{1}}, {Writes: []int{2}}}, 3, nil, []int{1},
			[]Span{{0, 1}, {1, 3}, {2, 2}}},
		{"pinned input", []Step{{Writes: []int{1}}}, 2, []int{0}, []int{0},
			[]Span{{-1, 1}, {0, 0}}},
		{"one step writes two", []Step{{Writes: []int{0, 1}}, {Reads: []int{0}}, {Reads: []int{1}}}, 2, nil, nil,
			[]Span{{0, 1}, {0, 2}}},
		{"read and written in place", []Step{{Writes: []int{0}}, {Reads: []int{0}, Writes: []int{0}}, {Reads: []int{0}}}, 1, nil, nil,
			[]Span{{0, 2}}},
		{"read twice: the last read", []Step{{Writes: []int{0}}, {Reads: []int{0}}, {}, {Reads: []int{0, 0}}}, 1, nil, nil,
			[]Span{{0, 3}}},
		{"ids out of range ignored", []Step{{Writes: []int{0, 5, -1}}}, 1, []int{7}, []int{-2},
			[]Span{{0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Lives(tt.steps, tt.n, tt.inputs, tt.pinned)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Lives = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBuffers: a storage lives over its values and their views.
func TestBuffers(t *testing.T) {
	tests := []struct {
		name    string
		steps   []Step
		n       int
		inputs  []int
		pinned  []int
		storage []int
		viewOf  []int
		sizes   []int64
		want    []Buffer
	}{
		{"one value a storage", []Step{{Writes: []int{0}}, {Reads: []int{0}, Writes: []int{1}}, {Reads: []int{1}}}, 2, nil, nil,
			nil, nil, []int64{10, 20}, []Buffer{{10, 0, 1}, {20, 1, 2}}},
		// 1 is a pure view of 0 (no storage of its own), read at step 3
		{"view extends its base", []Step{{Writes: []int{0}}, {Reads: []int{0}, Writes: []int{1}}, {Writes: []int{2}}, {Reads: []int{1}, Writes: []int{3}}},
			4, nil, nil, []int{0, -1, 1, 2}, []int{-1, 0, -1, -1}, []int64{8, 8, 8}, []Buffer{{8, 0, 3}, {8, 2, 2}, {8, 3, 3}}},
		// 1 views 0, 2 views 1, 3 views 2: 3's last read keeps 0's storage
		{"chain of views", []Step{{Writes: []int{0}}, {Reads: []int{0}, Writes: []int{1}}, {Reads: []int{1}, Writes: []int{2}},
			{Reads: []int{2}, Writes: []int{3}}, {Writes: []int{4}}, {Reads: []int{3, 4}}},
			5, nil, nil, []int{0, -1, -1, -1, 1}, []int{-1, 0, 1, 2, -1}, []int64{4, 4}, []Buffer{{4, 0, 5}, {4, 4, 5}}},
		// 1 may view 0 (own storage 1, and 0's kept as long as 1 lives)
		{"may view: both kept", []Step{{Writes: []int{0}}, {Reads: []int{0}, Writes: []int{1}}, {}, {Reads: []int{1}}},
			2, nil, nil, []int{0, 1}, []int{-1, 0}, []int64{16, 16}, []Buffer{{16, 0, 3}, {16, 1, 3}}},
		// 2 is written over 1 (in place), 1 dies there: one storage for both
		{"in place", []Step{{Writes: []int{0}}, {Reads: []int{0}, Writes: []int{1}}, {Reads: []int{1}, Writes: []int{2}}, {Reads: []int{2}}},
			3, nil, nil, []int{0, 1, 1}, nil, []int64{32, 32}, []Buffer{{32, 0, 1}, {32, 1, 3}}},
		{"input and pinned output", []Step{{Reads: []int{0}, Writes: []int{1}}, {Reads: []int{1}, Writes: []int{2}}},
			3, []int{0}, []int{2}, nil, nil, []int64{1, 2, 3}, []Buffer{{1, -1, 0}, {2, 0, 1}, {3, 1, 2}}},
		// the view of a pinned value keeps its base to the end too
		{"view of a pinned value", []Step{{Writes: []int{0}}, {Reads: []int{0}, Writes: []int{1}}},
			2, nil, []int{1}, []int{0, -1}, []int{-1, 0}, []int64{64}, []Buffer{{64, 0, 2}}},
		{"never read", []Step{{Writes: []int{0, 1}}, {Reads: []int{0}}},
			2, nil, nil, nil, nil, []int64{5, 6}, []Buffer{{5, 0, 1}, {6, 0, 0}}},
		{"one step writes two into one storage", []Step{{Writes: []int{0, 1}}, {Reads: []int{1}}, {Reads: []int{0}}},
			2, nil, nil, []int{0, 0}, nil, []int64{9}, []Buffer{{9, 0, 2}}},
		// Concat nesting: 0 and 1 placed inside 2's storage
		{"nested in an output", []Step{{Writes: []int{0}}, {Writes: []int{1}}, {Reads: []int{0, 1}, Writes: []int{2}}, {Reads: []int{2}}},
			3, nil, nil, []int{0, 0, 0}, nil, []int64{100}, []Buffer{{100, 0, 3}}},
		{"storage nothing lives in", []Step{{Writes: []int{0}}},
			2, nil, nil, []int{0, -1}, nil, []int64{1, 2}, []Buffer{{1, 0, 0}, {2, 0, -1}}},
		{"value outside every storage", []Step{{Writes: []int{0, 1}}, {Reads: []int{1}}},
			2, nil, nil, []int{-1, 0}, nil, []int64{3}, []Buffer{{3, 0, 1}}},
		{"a cycle of views ends", []Step{{Writes: []int{0, 1}}, {Reads: []int{1}}},
			2, nil, nil, []int{0, -1}, []int{1, 0}, []int64{3}, []Buffer{{3, 0, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Buffers(Lives(tt.steps, tt.n, tt.inputs, tt.pinned), tt.storage, tt.viewOf, tt.sizes)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Buffers = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBuffersPlace: the buffers Buffers gives a chain with a residual kept
// are placed as their lives allow (the residual's bytes are never reused
// while it lives).
func TestBuffersPlace(t *testing.T) {
	// x (input) -> a -> b -> c = b + x
	steps := []Step{{Reads: []int{0}, Writes: []int{1}}, {Reads: []int{1}, Writes: []int{2}}, {Reads: []int{2, 0}, Writes: []int{3}}}
	bufs := Buffers(Lives(steps, 4, []int{0}, []int{3}), nil, nil, []int64{256, 256, 256, 256})
	want := []Buffer{{256, -1, 2}, {256, 0, 1}, {256, 1, 2}, {256, 2, 3}}
	if !slices.Equal(bufs, want) {
		t.Fatalf("Buffers = %v, want %v", bufs, want)
	}
	off, total := Place(bufs, 256)
	check(t, bufs, 256, off, total)
	if total != 3*256 || PeakLive(bufs, 256) != 3*256 {
		t.Errorf("arena %d, peak %d, want %d", total, PeakLive(bufs, 256), 3*256)
	}
}
