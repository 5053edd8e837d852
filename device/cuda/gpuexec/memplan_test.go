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
