package gpuexec

import "testing"

func TestPlanOffsets(t *testing.T) {
	tests := []struct {
		name      string
		bufs      []interval
		wantTotal int64
	}{
		{"empty", nil, 0},
		{"one", []interval{{100, 0, 1}}, 256},
		{"chain reuses", []interval{{1000, -1, 0}, {1000, 0, 1}, {1000, 1, 2}, {1000, 2, 3}}, 2 * 1024},
		{"all live", []interval{{300, 0, 5}, {300, 1, 5}, {300, 2, 5}}, 3 * 512},
		{"residual kept", []interval{{256, -1, 3}, {256, 0, 1}, {256, 1, 2}, {256, 2, 3}}, 3 * 256},
		{"small fits in a gap", []interval{{512, 0, 1}, {2048, 0, 3}, {256, 2, 3}, {512, 1, 2}}, 2048 + 512 + 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off, total := planOffsets(tt.bufs)
			if total != tt.wantTotal {
				t.Errorf("total %d, want %d (offsets %v)", total, tt.wantTotal, off)
			}
			for i, a := range tt.bufs {
				if off[i]%Alignment != 0 || off[i]+a.size > total {
					t.Errorf("buffer %d at %d of %d bytes: misaligned or outside %d", i, off[i], a.size, total)
				}
				for j, b := range tt.bufs[:i] {
					if a.overlaps(b) && off[i] < off[j]+b.size && off[j] < off[i]+a.size {
						t.Errorf("buffers %d and %d live together and share bytes", j, i)
					}
				}
			}
		})
	}
}

// TestAccessesLifetimes: the stores' lifetimes from what the steps do
// with them (package arena's liveness model), and the step that made each.
func TestAccessesLifetimes(t *testing.T) {
	type access struct {
		step, id int
		write    bool
	}
	tests := []struct {
		name   string
		n      int // steps
		stores int
		acc    []access
		inputs []int
		pinned []int
		want   []interval
		made   []int
	}{
		{"chain", 3, 3, []access{{0, 0, true}, {1, 0, false}, {1, 1, true}, {2, 1, false}, {2, 2, true}}, nil, []int{2},
			[]interval{{1, 0, 1}, {1, 1, 2}, {1, 2, 3}}, []int{0, 1, 2}},
		{"input read late, scratch", 3, 3, []access{{0, 1, true}, {1, 2, true}, {2, 0, false}, {2, 1, false}}, []int{0}, nil,
			[]interval{{1, -1, 2}, {1, 0, 2}, {1, 1, 1}}, []int{-1, 0, 1}},
		{"half input: staging read, store written by the cast", 2, 2, []access{{0, 1, false}, {0, 0, true}, {1, 0, false}}, []int{1}, nil,
			[]interval{{1, 0, 1}, {1, -1, 0}}, []int{0, -1}},
		{"output written by the last step", 2, 2, []access{{0, 0, true}, {1, 0, false}, {1, 1, true}}, nil, []int{1},
			[]interval{{1, 0, 1}, {1, 1, 2}}, []int{0, 1}},
		{"keep: all pinned", 2, 2, []access{{0, 0, true}, {1, 1, true}}, nil, []int{0, 1},
			[]interval{{1, 0, 2}, {1, 1, 2}}, []int{0, 1}},
		{"not written yet", 1, 2, []access{{0, 0, true}}, nil, nil,
			[]interval{{1, 0, 0}, {1, 0, -1}}, []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a accesses
			for _, x := range tt.acc {
				if x.write {
					a.write(x.step, x.id)
				} else {
					a.read(x.step, x.id)
				}
			}
			a.inputs, a.pinned = tt.inputs, tt.pinned
			for id, want := range tt.made {
				if got := a.madeAt(id); got != want {
					t.Errorf("madeAt(%d) = %d, want %d", id, got, want)
				}
			}
			stores := make([]interval, tt.stores)
			for i := range stores {
				stores[i].size = 1
			}
			a.lifetimes(stores, tt.n)
			for i := range stores {
				if stores[i] != tt.want[i] {
					t.Errorf("store %d: %+v, want %+v", i, stores[i], tt.want[i])
				}
			}
		})
	}
}
