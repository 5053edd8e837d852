package nn

import (
	"slices"
	"testing"

	"github.com/kilnai/kiln/tensor"
)

// TestResolveRanks: a window's geometry is the same whether its slices
// share the geom's own array (up to geomRank spatial dims) or one made for
// it (more), each slice holds its own dims only (appending to one does
// not write into the next), and convSetup's output shape is [N, M,
// spatial...] at every rank.
func TestResolveRanks(t *testing.T) {
	for _, c := range []struct {
		name                           string
		in, k, strides, pads, wantOut  []int
		wantStride, wantPadB, wantPadE []int
	}{
		{"1d", []int{10}, []int{3}, []int{2}, []int{1, 0}, []int{5}, []int{2}, []int{1}, []int{0}},
		{"2d", []int{7, 9}, []int{3, 3}, []int{1, 2}, []int{1, 1, 1, 1}, []int{7, 5}, []int{1, 2}, []int{1, 1}, []int{1, 1}},
		{"3d", []int{4, 5, 6}, []int{2, 2, 2}, nil, nil, []int{3, 4, 5}, []int{1, 1, 1}, []int{0, 0, 0}, []int{0, 0, 0}},
		{"4d (past geomRank)", []int{4, 5, 6, 7}, []int{1, 2, 3, 4}, []int{1, 1, 1, 2}, []int{0, 0, 0, 1, 0, 0, 0, 1}, []int{4, 4, 4, 3}, []int{1, 1, 1, 2}, []int{0, 0, 0, 1}, []int{0, 0, 0, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := window{strides: c.strides, pads: c.pads}
			g, err := w.resolve(c.in, c.k)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				name      string
				got, want []int
			}{
				{"out", g.out, c.wantOut}, {"stride", g.stride, c.wantStride}, {"dil", g.dil, slices.Repeat([]int{1}, len(c.in))},
				{"padB", g.padB, c.wantPadB}, {"padE", g.padE, c.wantPadE},
			} {
				if !slices.Equal(f.got, f.want) {
					t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
				}
				if cap(f.got) != len(f.got) {
					t.Errorf("%s has capacity %d past its %d dims: an append would write into the next slice", f.name, cap(f.got), len(f.got))
				}
			}
			_ = append(g.out, -1)
			if !slices.Equal(g.stride, c.wantStride) {
				t.Errorf("appending to out changed stride to %v", g.stride)
			}
			x := tensor.New(tensor.Float32, append([]int{2, 3}, c.in...)...)
			k := tensor.New(tensor.Float32, append([]int{4, 3}, c.k...)...)
			s, out, err := convSetup("Conv", &w, 1, x, k, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]int{2, 4}, c.wantOut...); !slices.Equal(out, want) || !slices.Equal(s.g.out, c.wantOut) {
				t.Errorf("convSetup: output shape %v, geometry's out %v, want %v", out, s.g.out, want)
			}
		})
	}
}
